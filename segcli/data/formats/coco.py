"""COCO instance annotations (what CVAT, Label Studio, Roboflow and makesense export) as
semantic masks.

Layout: DATA/annotations/*.json beside the images (DATA/images/, DATA/<split>/ as in
train2017/, or DATA/ itself). `instances_train*.json` and `instances_val*.json` (and
`instances_test*.json`) give the splits; a single other JSON is one pool, split as the plain
layout is. Roboflow's export (DATA/{train,valid,test}/_annotations.coco.json beside the images)
works too. The rules (docs/data-formats.md):

- classes: 0 is background (no annotation); the categories follow in ascending id order as
  1..K, whatever their ids, with their names;
- overlaps: instances are painted largest first, so a smaller instance on top of a larger one
  stays visible (ties by annotation id): the same pixels always get the same class;
- `iscrowd` regions are ignored (255): painted first, under every non-crowd instance;
- images without annotations are all background.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from segcli.data.formats.common import make_splits
from segcli.data.io import IGNORE
from segcli.data.samples import Sample, Splits
from segcli.errors import DataError, UserError

# Annotation files that hold no instance masks (captions, keypoints, image lists).
_OTHER = re.compile(r"^(captions|person_keypoints|image_info)_", re.I)
_PARTS = (("train", re.compile(r"^instances_train", re.I)), ("val", re.compile(r"^instances_val", re.I)),
          ("test", re.compile(r"^instances_test", re.I)))


def _json_files(root: Path) -> list[Path]:
    folder = root / "annotations"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.json") if p.is_file() and not _OTHER.match(p.name))


ROBOFLOW = "_annotations.coco.json"
_ROBOFLOW_PARTS = (("train", "train"), ("val", "valid"), ("val", "val"), ("test", "test"))


def _roboflow(root: Path) -> dict[str, list[Path]]:
    """Roboflow's COCO export: one _annotations.coco.json per split folder, beside its images."""
    parts: dict[str, list[Path]] = {}
    for name, folder in _ROBOFLOW_PARTS:
        if (root / folder / ROBOFLOW).is_file():
            parts.setdefault(name, []).append(root / folder / ROBOFLOW)
    return parts if "train" in parts else {}


def detect(root: Path) -> bool:
    return bool(_json_files(root)) or bool(_roboflow(root))


@dataclass(frozen=True)
class CocoMask:
    """One image's annotations, decoded to a class-index mask on demand (picklable: it holds
    only that image's annotations, so loader workers need not share the whole JSON)."""

    path: Path  # the annotation file
    image_id: Any
    height: int
    width: int
    anns: tuple[tuple[Any, int, bool, Any], ...]  # (annotation id, class index, iscrowd, segmentation)

    def __str__(self) -> str:
        return f"{self.path} (image id {self.image_id})"

    def __hash__(self) -> int:  # the annotations hold lists: hash what names the mask
        return hash((self.path, str(self.image_id)))

    def read(self) -> np.ndarray:
        with warnings.catch_warnings():  # pycocotools' decode warns under NumPy 2 (harmless)
            warnings.simplefilter("ignore", DeprecationWarning)
            return self._paint()

    def _paint(self) -> np.ndarray:
        mask_utils = _pycocotools()
        h, w = self.height, self.width
        rles = [(ann_id, k, crowd, _rle(mask_utils, segm, h, w, f"{self.path}: annotation {ann_id}"))
                for ann_id, k, crowd, segm in self.anns]
        rles = [r for r in rles if r[3] is not None]
        areas = {id(r): int(mask_utils.area(r[3])) for r in rles}
        # crowd regions first (under everything), then the largest instance first, ties by id
        rles.sort(key=lambda r: (not r[2], -areas[id(r)], _sort_key(r[0])))
        mask = np.zeros((h, w), np.uint8)
        for _, k, crowd, rle in rles:
            mask[mask_utils.decode(rle).astype(bool)] = IGNORE if crowd else k
        return mask


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def _pycocotools() -> Any:
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        raise UserError("COCO annotations need pycocotools: pip install pycocotools") from None
    return mask_utils


def _rle(mask_utils: Any, segm: Any, h: int, w: int, where: str) -> Optional[dict]:
    """A segmentation (polygons, uncompressed or compressed RLE) as one compressed RLE; None
    for polygons with no area (fewer than 3 points)."""
    if isinstance(segm, list):
        polys = []
        for poly in segm:
            if not isinstance(poly, list) or len(poly) % 2 or not all(_number(v) for v in poly):
                raise DataError(f"{where}: a polygon must be a flat list of x, y numbers")
            if len(poly) >= 6:  # fewer than 3 points cover no pixels
                polys.append([float(v) for v in poly])
        return mask_utils.merge(mask_utils.frPyObjects(polys, h, w)) if polys else None
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        if list(segm["size"]) != [h, w]:
            raise DataError(f"{where}: RLE size {list(segm['size'])} is not the image's [height, width] [{h}, {w}]")
        counts = segm["counts"]
        if isinstance(counts, list):
            if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != h * w:
                raise DataError(f"{where}: uncompressed RLE counts must be non-negative and sum to height x width")
            return mask_utils.frPyObjects(segm, h, w)
        if isinstance(counts, str):
            return {"size": [h, w], "counts": counts.encode("ascii", "replace")}
    raise DataError(f"{where}: segmentation is neither polygons nor RLE ({{counts, size}})")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable COCO JSON file ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: not a COCO annotation file (no 'images' list)")
    for key in ("annotations", "categories"):
        if not isinstance(data.setdefault(key, []), list):
            raise DataError(f"{path}: '{key}' must be a list")
    return data


def _categories(files: list[tuple[Path, dict[str, Any]]]) -> dict[Any, str]:
    """Category id -> name over every file; the same id must mean the same name everywhere."""
    cats: dict[Any, str] = {}
    for path, data in files:
        for c in data["categories"]:
            if not isinstance(c, dict) or "id" not in c:
                raise DataError(f"{path}: a category without an id: {str(c)[:80]}")
            name = str(c.get("name", f"category_{c['id']}"))
            if cats.setdefault(c["id"], name) != name:
                raise DataError(f"{path}: category id {c['id']} is '{name}' here but '{cats[c['id']]}' in another file")
    if len(cats) > 254:
        raise DataError(f"{files[0][0]}: {len(cats)} categories; segcli supports at most 254 (+ background)")
    return cats


def _locate(root: Path, json_path: Path, file_name: str) -> Optional[Path]:
    """Where an image named in the JSON lives: DATA/images/, DATA/images/<split>/, DATA/<split>/
    (train2017/ for instances_train2017.json) or DATA/, by its path or its bare name."""
    tag = re.sub(r"^instances_", "", json_path.stem, flags=re.I)
    name = Path(file_name.replace("\\", "/"))
    for folder in (root / "images", root / "images" / tag, root / tag, root, json_path.parent):
        for candidate in (folder / name, folder / name.name):
            if not name.is_absolute() and candidate.is_file():
                return candidate
    return name if name.is_absolute() and name.is_file() else None


def _samples(root: Path, path: Path, data: dict[str, Any], classes: dict[Any, int]) -> list[Sample]:
    images: dict[Any, dict[str, Any]] = {}
    for im in data["images"]:
        if not isinstance(im, dict) or "id" not in im:
            raise DataError(f"{path}: an image entry without an id: {str(im)[:80]}")
        if im["id"] in images:
            raise DataError(f"{path}: image id {im['id']} appears twice")
        if not isinstance(im.get("file_name"), str) or not all(
                isinstance(im.get(k), int) and im[k] > 0 for k in ("width", "height")):
            raise DataError(f"{path}: image id {im['id']}: needs file_name, width and height")
        images[im["id"]] = im
    anns: dict[Any, list[tuple[Any, int, bool, Any]]] = {k: [] for k in images}
    for a in data["annotations"]:
        ann_id = a.get("id") if isinstance(a, dict) else None
        if ann_id is None or a.get("image_id") not in images:
            raise DataError(f"{path}: annotation {ann_id}: image_id {a.get('image_id') if isinstance(a, dict) else None} "
                            "is not an image of this file")
        if a.get("category_id") not in classes:
            raise DataError(f"{path}: annotation {ann_id}: category_id {a.get('category_id')} is not in 'categories'")
        if "segmentation" not in a:
            raise DataError(f"{path}: annotation {ann_id}: no 'segmentation' (segcli needs polygons or RLE masks)")
        anns[a["image_id"]].append((ann_id, classes[a["category_id"]], bool(a.get("iscrowd", 0)), a["segmentation"]))
    samples = []
    for image_id, im in images.items():
        file = _locate(root, path, im["file_name"])
        if file is None:
            raise DataError(f"{path}: image id {image_id}: '{im['file_name']}' not found in {root / 'images'}, "
                            f"{root}/<split>/ or {root}")
        samples.append(Sample(file, CocoMask(path, image_id, im["height"], im["width"], tuple(anns[image_id]))))
    return samples


def _parts(root: Path) -> dict[str, list[Path]]:
    files = _json_files(root)
    if not files:
        return _roboflow(root)
    parts = {name: [p for p in files if rx.match(p.name)] for name, rx in _PARTS}
    if parts["val"] and not parts["train"]:
        raise DataError(f"{parts['val'][0]}: a validation file but no instances_train*.json beside it")
    if parts["train"]:
        return parts
    if len(files) > 1:
        raise DataError(f"{root / 'annotations'}: {len(files)} annotation files ({', '.join(p.name for p in files[:4])}); "
                        "name them instances_train*.json and instances_val*.json, or keep one")
    return {"train": files}


def read(root: Path, val_split: float, seed: int) -> Splits:
    parts = _parts(root)
    loaded = {name: [(p, _load(p)) for p in paths] for name, paths in parts.items()}
    cats = _categories([f for files in loaded.values() for f in files])
    ids = sorted(cats, key=_sort_key)
    classes = {cat_id: i + 1 for i, cat_id in enumerate(ids)}
    samples = {name: [s for p, d in files for s in _samples(root, p, d, classes)] for name, files in loaded.items()}
    first = next(p for paths in parts.values() for p in paths)
    return make_splits(samples, val_split, seed, classes=["background"] + [cats[i] for i in ids], format="coco",
                       classes_file=f"{first} (its categories)")
