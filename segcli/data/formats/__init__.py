"""Annotation formats read directly: COCO, Pascal VOC and Cityscapes, detected from the folder.

Each reader turns its folder into the `Splits` the plain layout produces (segcli.data.samples),
with masks it cannot hand over as a file given as a `MaskSource` that decodes itself, so every
command downstream (check, train, evaluate, convert) treats them all alike. The rules each
format follows (class order, overlaps, crowd regions, id mappings) are in docs/data-formats.md.

Detection looks for each format's signature and never for the plain layout's (images/ + masks/,
or train/ + val/), which wins when both are present: a user's own masks come first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from segcli.data.formats import cityscapes, coco, voc
from segcli.data.samples import Splits

NAMES = {"coco": "COCO", "voc": "Pascal VOC", "cityscapes": "Cityscapes"}


def detect(root: Path) -> Optional[str]:
    """The annotation format of a dataset folder, or None for the plain layout (or nothing known)."""
    if (root / "masks").is_dir() or (root / "train" / "images").is_dir():
        return None  # the plain layout
    for name, module in (("cityscapes", cityscapes), ("voc", voc), ("coco", coco)):
        if module.detect(root):
            return name
    return None


def read(root: Path, name: str, val_split: float, seed: int) -> Splits:
    """The splits of a folder in format `name` (from `detect`); raises DataError naming the file."""
    module = {"coco": coco, "voc": voc, "cityscapes": cityscapes}[name]
    return module.read(root, val_split, seed)
