"""Cityscapes: leftImg8bit/<split>/<city>/*_leftImg8bit.png with gtFine/<split>/<city>/*_gtFine_labelIds.png.

The labelIds masks hold the 34 label ids of the Cityscapes label table; segcli maps them to
the 19 train ids the benchmark scores (cityscapesscripts' labels.py), and every other id
(unlabeled, ego vehicle, parking, rail track, caravan, ...) to 255, ignored. Splits: train and
val as given; the test split is left out (its public labels are empty), so `evaluate` uses val.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segcli.data.formats.common import make_splits
from segcli.data.io import IGNORE, read_mask_file
from segcli.data.samples import Sample, Splits
from segcli.errors import DataError

# (name, colour) of the 19 evaluated classes in train-id order, and label id -> train id
CLASSES = [
    ("road", (128, 64, 128)), ("sidewalk", (244, 35, 232)), ("building", (70, 70, 70)), ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)), ("pole", (153, 153, 153)), ("traffic light", (250, 170, 30)),
    ("traffic sign", (220, 220, 0)), ("vegetation", (107, 142, 35)), ("terrain", (152, 251, 152)),
    ("sky", (70, 130, 180)), ("person", (220, 20, 60)), ("rider", (255, 0, 0)), ("car", (0, 0, 142)),
    ("truck", (0, 0, 70)), ("bus", (0, 60, 100)), ("train", (0, 80, 100)), ("motorcycle", (0, 0, 230)),
    ("bicycle", (119, 11, 32)),
]
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
             26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
NUM_LABEL_IDS = 34  # ids 0..33; the license plate's -1 is stored as 255


def label_lut() -> np.ndarray:
    """(256,) uint8: label id -> train id, 255 for ignored ids."""
    lut = np.full(256, IGNORE, np.uint8)
    for label_id, train_id in TRAIN_IDS.items():
        lut[label_id] = train_id
    return lut


def detect(root: Path) -> bool:
    return (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir()


@dataclass(frozen=True)
class CityscapesMask:
    """A gtFine labelIds PNG, read with the label id -> train id mapping applied."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)

    def read(self) -> np.ndarray:
        ids = read_mask_file(self.path)
        bad = (ids >= NUM_LABEL_IDS) & (ids != 255)
        if bad.any():
            y, x = np.argwhere(bad)[0]
            raise DataError(f"{self.path}: value {int(ids[y, x])} at x={x}, y={y} is not a Cityscapes label id "
                            f"(0-{NUM_LABEL_IDS - 1}); pass the *_gtFine_labelIds.png files")
        return label_lut()[ids]


def _split(root: Path, split: str) -> list[Sample]:
    samples = []
    for image in sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png")):
        stem = image.name[: -len("_leftImg8bit.png")]
        mask = root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelIds.png"
        if not mask.is_file():
            raise DataError(f"{image}: no fine labels ({mask} not found)")
        samples.append(Sample(image, CityscapesMask(mask)))
    return samples


def read(root: Path, val_split: float, seed: int) -> Splits:
    parts = {"train": _split(root, "train"), "val": _split(root, "val")}
    if not parts["train"]:
        raise DataError(f"{root / 'leftImg8bit' / 'train'}: no <city>/*_leftImg8bit.png images")
    return make_splits(parts, val_split, seed, classes=[n for n, _ in CLASSES], colors=[list(c) for _, c in CLASSES],
                       format="cityscapes", classes_file="the Cityscapes train ids (19 classes)")
