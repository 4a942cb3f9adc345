"""`segcli convert SRC DST`: any dataset segcli reads, written as the plain layout.

The masks are decoded by the same readers training uses (segcli.data.formats through
read_mask), so DST holds exactly what segcli learns from: users can look at it, fix it, and
train on it with the same results. Images are copied byte for byte (no re-encoding); masks
become PNGs of class indices (palette PNGs coloured as the classes, 255 = ignored); class names
(and colours) go to DST/classes.txt. The splits the source names are kept (train/, val/,
test/); a source without them becomes one flat images/ + masks/ pool.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image

from segcli.data.discovery import discover
from segcli.data.io import read_mask
from segcli.data.samples import Sample
from segcli.errors import DataError, UserError
from segcli.visualize import palette


@dataclass
class ConvertResult:
    dst: Path
    format: str
    layout: str
    counts: dict[str, int] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)


def _check_dst(src: Path, dst: Path) -> None:
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise UserError(f"{dst}: exists and is not an empty folder; choose a new folder for the converted dataset")
    if dst.resolve() == src.resolve():
        raise UserError(f"{dst}: the source folder itself; choose a new folder")


def _names(samples: list[Sample]) -> list[str]:
    """Image file names in the output folder: the source's, made unique by stem (masks pair by stem)."""
    used: set[str] = set()
    names = []
    for s in samples:
        stem, suffix, n = s.image.stem, s.image.suffix, 2
        while stem.lower() in used:
            stem, n = f"{s.image.stem}_{n}", n + 1
        used.add(stem.lower())
        names.append(stem + suffix)
    return names


def write_mask(values: np.ndarray, path: Path, colors: Optional[list[list[int]]] = None) -> None:
    """Class indices as a palette PNG (coloured like segcli's masks), or a 16-bit PNG above 255."""
    if values.dtype != np.uint8 and int(values.max(initial=0)) > 255:
        Image.fromarray(values.astype(np.uint16)).save(path)
        return
    im = Image.fromarray(values.astype(np.uint8), "P")
    im.putpalette(palette(colors).ravel().tolist())
    im.save(path)


def _write_part(samples: list[Sample], folder: Path, colors: list[list[int]],
                progress: Optional[Callable[[int], None]]) -> None:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for sample, name in zip(samples, _names(samples)):
        try:
            shutil.copyfile(sample.image, folder / "images" / name)
        except OSError as e:
            raise DataError(f"{sample.image}: cannot copy ({e.strerror or e})") from None
        if sample.mask is not None:
            write_mask(read_mask(sample.mask), folder / "masks" / f"{Path(name).stem}.png", colors)
        if progress:
            progress(1)


def classes_text(classes: list[str], colors: list[list[int]]) -> str:
    """classes.txt: one name per line, with its colour (`name R G B`) when the source has colours."""
    lines = [f"{name} {' '.join(str(v) for v in colors[i])}" if i < len(colors) else name
             for i, name in enumerate(classes)]
    return "\n".join(lines) + "\n"


def convert(src: str | Path, dst: str | Path, progress: Optional[Callable[[int], None]] = None) -> ConvertResult:
    """Write SRC (COCO, VOC, Cityscapes or plain) to DST in the plain layout; DST must be new or empty."""
    src, dst = Path(src), Path(dst)
    splits = discover(src, val_split=0.0, seed=0)  # every sample, in the parts the source names
    _check_dst(src, dst)
    parts = {"": splits.train} if splits.layout == "flat" else splits.parts()
    dst.mkdir(parents=True, exist_ok=True)
    for name, samples in parts.items():
        _write_part(samples, dst / name if name else dst, splits.colors, progress)
    if splits.classes:
        (dst / "classes.txt").write_text(classes_text(splits.classes, splits.colors), encoding="utf-8")
    counts = {name or "images": len(samples) for name, samples in parts.items()}
    return ConvertResult(dst, splits.format, "flat" if "" in parts else "split", counts, list(splits.classes))
