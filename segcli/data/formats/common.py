"""What the format readers share: splits from named parts, class-list files, image look-up."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from segcli.data.io import IMAGE_EXTS
from segcli.data.samples import Sample, Splits, by_name, split_seeded


def make_splits(parts: dict[str, list[Sample]], val_split: float, seed: int, **kw: object) -> Splits:
    """Splits from the parts a format names: train and val as given ("split" layout), or, when the
    data names no validation part, validation carved out of train by the seeded split ("flat")."""
    train = by_name(parts.get("train", []))
    test = by_name(parts.get("test", []))
    if parts.get("val"):
        return Splits(train, by_name(parts["val"]), test, layout="split", **kw)  # type: ignore[arg-type]
    train, val = split_seeded(train, val_split, seed)
    return Splits(train, val, test, layout="flat", **kw)  # type: ignore[arg-type]


def find_image(folder: Path, stem: str) -> Optional[Path]:
    """folder/stem.<any image extension>, the first that exists (VOC ids name no extension)."""
    for ext in IMAGE_EXTS + tuple(e.upper() for e in IMAGE_EXTS):
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None
