"""`select -o DIR`: the picked images with the model's masks, a head start for the annotator.

DIR/images/ holds copies of the picked images and DIR/masks/ the model's masks (`segcli predict`'s
files), so once corrected DIR is a dataset segcli trains on; with `--format coco` the masks are
DIR/annotations/instances_default.json instead (polygons: CVAT and Label Studio import it, and
segcli reads it back pixel for pixel). DIR/error_maps/ holds the error maps (where the model
doubts: the places to check first) when the model has a quality estimator; DIR/list.txt the
picked pool paths and DIR/selection.json what `--json` prints, with these files named.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from PIL import Image

from segcli.data.io import check_channels, read_image
from segcli.errors import UserError
from segcli.infer.pipeline import prefetch, segment_stream
from segcli.infer.predict import plan_outputs, save_mask
from segcli.infer.predictor import Predictor
from segcli.infer.select.coco import CocoWriter
from segcli.infer.select.pool import header_pixels

COCO_FILE = "annotations/instances_default.json"  # CVAT's name for an exported COCO task


def check_output(out: Path) -> None:
    """-o must be a new or empty folder: a selection never mixes with an earlier one's files."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"-o {out}: exists and is not empty; pass a new folder for the selection")


def write_head_start(predictor: Predictor, paths: list[Path], out: Path, fmt: str,
                     on_unreadable: Optional[Callable[[Path, str], None]] = None) -> dict[Path, dict[str, Any]]:
    """Copy `paths` into out/images/ and write the model's masks (and error maps); per path, the files
    written and the estimate (None without an estimator). Unreadable paths are reported and left out."""
    info = predictor.info
    plan = plan_outputs(paths, out / "masks", False)  # unique stems, never over an input
    coco = CocoWriter(info.class_names()) if fmt == "coco" else None
    written: dict[Path, dict[str, Any]] = {}

    def load(path: Path) -> np.ndarray:
        return check_channels(read_image(path), info.in_channels, path)

    loaded = prefetch(paths, load, header_pixels, max_ahead=2 * predictor.batch_size + 2)
    for s in segment_stream(predictor, loaded, lambda im: im):
        path = s.item.key
        if s.item.error is not None:
            if on_unreadable:
                on_unreadable(path, s.item.error)
            continue
        stem = plan[path].stem
        files: dict[str, Any] = {"image_copy": out / "images" / f"{stem}{path.suffix.lower()}"}
        files["image_copy"].parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, files["image_copy"])
        if coco is not None:
            coco.add(files["image_copy"].name, s.labels)
        else:
            files["mask"] = plan[path]
            save_mask(s.labels, info.binary, plan[path], info.colors)
        if s.seg.error is not None:
            files["error_map"] = out / "error_maps" / f"{stem}.png"
            files["error_map"].parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(s.seg.error, "L").save(files["error_map"])
        written[path] = {**{k: str(v) for k, v in files.items()}, "quality": s.seg.quality}
    if coco is not None:
        (out / COCO_FILE).parent.mkdir(parents=True, exist_ok=True)
        (out / COCO_FILE).write_text(json.dumps(coco.doc) + "\n", encoding="utf-8")
        for entry in written.values():
            entry["annotations"] = str(out / COCO_FILE)
    return written


def write_lists(out: Path, picked: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """DIR/list.txt (the picked pool paths, one a line) and DIR/selection.json (everything)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "list.txt").write_text("".join(f"{p['image']}\n" for p in picked), encoding="utf-8")
    (out / "selection.json").write_text(json.dumps({**summary, "picked": picked}, indent=1) + "\n", encoding="utf-8")
