"""What every dataset reader produces, whatever the folder looks like: samples and splits.

The plain layout (segcli.data.discovery) and each annotation format (segcli.data.formats)
give the same `Splits` of `Sample`s, so scanning, checking, training, evaluation and
conversion never need to know where the data came from. A sample's mask is a file path, or
a `MaskSource` that decodes itself (segcli.data.io.read_mask handles both).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from segcli.data.io import MaskRef, is_image_file
from segcli.errors import DataError

FORMATS = ("plain", "coco", "voc", "cityscapes")


@dataclass(frozen=True)
class Sample:
    image: Path
    mask: Optional[MaskRef] = None


@dataclass
class Splits:
    """A dataset's samples per split, and what its classes are called.

    layout: "flat" (one pool, validation carved out by the seeded split) or "split" (the
    data names its splits). format: where it came from (plain, coco, voc, cityscapes).
    classes_file: what to name in messages about the class list (a classes.txt, a COCO
    JSON, a VOC labelmap.txt, the Cityscapes label table).
    """

    train: list[Sample]
    val: list[Sample]
    test: list[Sample] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    layout: str = "flat"
    format: str = "plain"
    colors: list[list[int]] = field(default_factory=list)
    classes_file: Optional[Union[Path, str]] = None

    def parts(self) -> dict[str, list[Sample]]:
        """The splits that hold samples, by name (train and val always)."""
        named = {"train": self.train, "val": self.val}
        if self.test:
            named["test"] = self.test
        return named


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def split_seeded(samples: list[Sample], val_split: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    if not 0.0 <= val_split < 1.0:
        raise DataError(f"--val-split {val_split}: must be in [0, 1)")
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    n_val = int(round(len(samples) * val_split))
    if val_split > 0 and len(samples) > 1:
        n_val = min(max(n_val, 1), len(samples) - 1)
    val_idx = set(order[:n_val])
    train = [s for i, s in enumerate(samples) if i not in val_idx]
    val = [s for i, s in enumerate(samples) if i in val_idx]
    return train, val


def by_name(samples: list[Sample]) -> list[Sample]:
    """Samples in the order the plain layout lists them (by image file name), so that the seeded
    split of a format's folder and of its `segcli convert` output pick the same images."""
    return sorted(samples, key=lambda s: (s.image.name, str(s.image)))
