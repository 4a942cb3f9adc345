"""Pascal VOC segmentation folders: the benchmark itself and what annotation tools export as VOC.

Layout: JPEGImages/ + SegmentationClass/ (+ ImageSets/Segmentation/{train,val}.txt), at DATA/,
DATA/VOC2012/ or DATA/VOCdevkit/VOC2012/. Masks are palette (or grayscale) PNGs whose values
are the class indices, 255 = the "void" boundary (ignored); colour (RGB) masks, as CVAT's
export writes them, are mapped to classes through labelmap.txt's colours, else VOC's own
palette. Class names come from labelmap.txt, else the 21 VOC classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from segcli.data.formats.common import find_image, make_splits
from segcli.data.io import IGNORE, read_mask_file
from segcli.data.samples import Sample, Splits
from segcli.errors import DataError

CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]
VOID_COLOR = (224, 224, 192)


def voc_palette(n: int = 256) -> list[list[int]]:
    """VOC's colour map: class i's colour from the bits of i (the devkit's bitget rule)."""
    colors = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colors.append([r, g, b])
    return colors


def voc_root(root: Path) -> Optional[Path]:
    """The folder holding JPEGImages/ and SegmentationClass/: DATA, DATA/VOC*, DATA/VOCdevkit/VOC*."""
    for cand in [root, *sorted(root.glob("VOC*")), *sorted(root.glob("VOCdevkit/VOC*"))]:
        if (cand / "JPEGImages").is_dir() and (cand / "SegmentationClass").is_dir():
            return cand
    return None


def detect(root: Path) -> bool:
    return voc_root(root) is not None


@dataclass(frozen=True)
class VocMask:
    """A SegmentationClass PNG: class indices as stored, or colours mapped through the class colours."""

    path: Path
    colors: tuple[tuple[int, int, int], ...]
    source: str  # where the colours come from, for messages

    def __str__(self) -> str:
        return str(self.path)

    def read(self) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(self.path) as im:
                rgb = np.asarray(im.convert("RGB")) if im.mode in ("RGB", "RGBA") else None
        except FileNotFoundError:
            raise DataError(f"{self.path}: mask not found") from None
        except Exception as e:
            raise DataError(f"{self.path}: cannot read mask ({type(e).__name__}: {e}); re-save it as PNG") from None
        return read_mask_file(self.path) if rgb is None else self._from_colors(rgb)

    def _from_colors(self, rgb: np.ndarray) -> np.ndarray:
        code = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
        lut = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(self.colors)}
        lut.setdefault((VOID_COLOR[0] << 16) | (VOID_COLOR[1] << 8) | VOID_COLOR[2], IGNORE)
        values, inverse = np.unique(code, return_inverse=True)
        mapped = np.empty(len(values), np.uint8)
        for j, v in enumerate(values.tolist()):
            if v not in lut:
                y, x = np.argwhere(code == v)[0]
                raise DataError(f"{self.path}: colour ({v >> 16}, {(v >> 8) & 255}, {v & 255}) at x={x}, y={y} "
                                f"is not a class colour of {self.source}")
            mapped[j] = lut[v]
        return mapped[inverse.reshape(code.shape)]


def read_labelmap(path: Path) -> tuple[list[str], list[list[int]]]:
    """labelmap.txt (CVAT / Datumaro): `name:R,G,B:parts:actions` per line, line order = class index."""
    names, colors = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(":")
        try:
            rgb = [int(v) for v in fields[1].split(",")] if len(fields) > 1 and fields[1].strip() else None
        except ValueError:
            rgb = []
        if not fields[0].strip() or (rgb is not None and (len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb))):
            raise DataError(f"{path}: line {n}: expected name:R,G,B (e.g. background:0,0,0::)")
        names.append(fields[0].strip())
        colors.append(rgb if rgb is not None else voc_palette(len(names))[-1])
    if not names:
        raise DataError(f"{path}: no classes listed")
    return names, colors


def _ids(path: Path) -> list[str]:
    """Image ids of an ImageSets list (the first word of each line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the image list ({type(e).__name__})") from None
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def _sample(base: Path, image_id: str, listed_in: Path, colors: tuple, source: str) -> Sample:
    image = find_image(base / "JPEGImages", image_id)
    if image is None:
        raise DataError(f"{listed_in}: '{image_id}' has no image in {base / 'JPEGImages'}")
    mask_path = base / "SegmentationClass" / f"{image_id}.png"
    if not mask_path.is_file():
        raise DataError(f"{listed_in}: '{image_id}' has no mask {mask_path}")
    return Sample(image, VocMask(mask_path, colors, source))


def read(root: Path, val_split: float, seed: int) -> Splits:
    base = voc_root(root)
    assert base is not None
    labelmap = base / "labelmap.txt"
    if labelmap.is_file():
        classes, colors = read_labelmap(labelmap)
        source = names = str(labelmap)
    else:
        classes, colors, source = list(CLASSES), voc_palette(len(CLASSES)), "the Pascal VOC palette"
        names = f"the 21 Pascal VOC classes (other classes: list them in {labelmap})"
    palette = tuple(tuple(c) for c in colors)
    sets = base / "ImageSets" / "Segmentation"
    lists = {name: sets / f"{name}.txt" for name in ("train", "val", "test", "trainval")}
    parts: dict[str, list[Sample]] = {}
    if lists["train"].is_file() or lists["trainval"].is_file():
        first = "train" if lists["train"].is_file() else "trainval"
        parts["train"] = [_sample(base, i, lists[first], palette, source) for i in _ids(lists[first])]
        if first == "train" and lists["val"].is_file():
            parts["val"] = [_sample(base, i, lists["val"], palette, source) for i in _ids(lists["val"])]
        test_ids = _ids(lists["test"]) if lists["test"].is_file() else []
        if test_ids and all((base / "SegmentationClass" / f"{i}.png").is_file() for i in test_ids):
            parts["test"] = [_sample(base, i, lists["test"], palette, source) for i in test_ids]  # VOC's own has no public masks
    else:
        masks = sorted(p for p in (base / "SegmentationClass").glob("*.png"))
        parts["train"] = [_sample(base, p.stem, p, palette, source) for p in masks]
    if not parts["train"]:
        raise DataError(f"{base}: no labelled images (SegmentationClass/ is empty)")
    return make_splits(parts, val_split, seed, classes=classes, colors=colors, format="voc", classes_file=names)
