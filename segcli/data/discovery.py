"""Finding the (image, mask) pairs of a dataset folder: the plain layouts of the contract, or
an annotation format (COCO, Pascal VOC, Cityscapes) detected from the folder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from segcli.data import formats
from segcli.data.samples import Sample, Splits, list_images, split_seeded
from segcli.errors import DataError

__all__ = ["Sample", "Splits", "discover", "eval_samples", "list_images", "pair_folder", "read_class_colors",
           "read_classes", "split_seeded"]


def _preview(paths: list[Path], n: int = 5) -> str:
    names = ", ".join(str(p) for p in paths[:n])
    return names + (f" and {len(paths) - n} more" if len(paths) > n else "")


def pair_folder(root: Path) -> list[Sample]:
    """Pair root/images/* with root/masks/* by file stem; every image needs a mask and vice versa."""
    img_dir, mask_dir = root / "images", root / "masks"
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise DataError(f"{d}: folder not found; a dataset holds images/ and masks/ side by side")
    images, masks = list_images(img_dir), list_images(mask_dir)
    if not images:
        raise DataError(f"{img_dir}: no images (png, jpg, tif, bmp, webp) found")
    by_stem: dict[str, Path] = {}
    for m in masks:
        if m.stem in by_stem:
            raise DataError(f"{m}: two masks share the stem '{m.stem}' ({by_stem[m.stem].name}); keep one")
        by_stem[m.stem] = m
    seen: set[str] = set()
    for p in images:
        if p.stem in seen:
            raise DataError(f"{p}: two images share the stem '{p.stem}'; rename one")
        seen.add(p.stem)
    orphans = [p for p in images if p.stem not in by_stem]
    if orphans:
        raise DataError(f"images without masks: {_preview(orphans)}; add their masks to {mask_dir} or remove them")
    extra = [m for m in masks if m.stem not in seen]
    if extra:
        raise DataError(f"masks without images: {_preview(extra)}; add their images to {img_dir} or remove them")
    return [Sample(p, by_stem[p.stem]) for p in images]


def _parse_class_line(line: str) -> tuple[str, Optional[list[int]]]:
    """`name`, `name R G B` or `name #RRGGBB` (the colour is optional, for masks and overlays)."""
    parts = line.split()
    if len(parts) >= 2 and re.fullmatch(r"#[0-9a-fA-F]{6}", parts[-1]):
        h = parts[-1]
        return " ".join(parts[:-1]), [int(h[i : i + 2], 16) for i in (1, 3, 5)]
    if len(parts) >= 4 and all(re.fullmatch(r"\d{1,3}", t) and int(t) <= 255 for t in parts[-3:]):
        return " ".join(parts[:-3]), [int(t) for t in parts[-3:]]
    return line, None


def _class_lines(root: Path) -> list[str]:
    path = root / "classes.txt"
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as e:
        raise DataError(f"{path}: cannot read class names ({type(e).__name__}); save it as UTF-8 text, "
                        "one class name per line") from None
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names or any(not n for n in names):
        raise DataError(f"{path}: one class name per line, no blank lines (line i = class index i)")
    return names


def read_classes(root: Path) -> list[str]:
    """Class names from root/classes.txt (line i = class i), colours stripped; [] without the file."""
    return [_parse_class_line(line)[0] for line in _class_lines(root)]


def read_class_colors(root: Path) -> list[list[int]]:
    """RGB colours from root/classes.txt lines `name R G B` or `name #RRGGBB`.

    [] when no line gives one; lines without a colour get the default palette's.
    """
    parsed = [_parse_class_line(line)[1] for line in _class_lines(root)]
    if not any(c is not None for c in parsed):
        return []
    from segcli.visualize import palette

    default = palette()
    return [c if c is not None else default[i].tolist() for i, c in enumerate(parsed)]


NO_LAYOUT = ("no images/ folder and no train/ folder; expected DATA/images + DATA/masks or DATA/train + "
             "DATA/val, or a COCO (annotations/*.json), Pascal VOC (JPEGImages/ + SegmentationClass/) or "
             "Cityscapes (leftImg8bit/ + gtFine/) folder")


def _check_root(root: Path) -> None:
    if not root.exists():
        raise DataError(f"{root}: dataset folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; pass a dataset folder holding images/ and masks/")


def discover(data: str | Path, val_split: float = 0.2, seed: int = 0) -> Splits:
    """Find a dataset's splits. Layouts: DATA/{images,masks} or DATA/{train,val[,test]}/{images,masks};
    otherwise a COCO, VOC or Cityscapes folder (segcli.data.formats)."""
    root = Path(data)
    _check_root(root)
    fmt = formats.detect(root)
    if fmt is not None:
        return formats.read(root, fmt, val_split, seed)
    classes = read_classes(root)
    common = dict(classes=classes, colors=read_class_colors(root), classes_file=root / "classes.txt")
    if (root / "train").is_dir():
        if not (root / "val").is_dir():
            raise DataError(f"{root / 'val'}: folder not found; a split dataset needs train/ and val/")
        test = pair_folder(root / "test") if (root / "test").is_dir() else []
        return Splits(pair_folder(root / "train"), pair_folder(root / "val"), test, layout="split", **common)
    if not (root / "images").is_dir():
        raise DataError(f"{root}: {NO_LAYOUT}")
    train, val = split_seeded(pair_folder(root), val_split, seed)
    return Splits(train, val, [], layout="flat", **common)


def eval_samples(data: str | Path) -> list[Sample]:
    """The pairs `evaluate` scores: flat images/masks, else test/, else val/ (a format's folder: its
    test split, else its validation split, else every image)."""
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    fmt = formats.detect(root)
    if fmt is not None:
        splits = formats.read(root, fmt, 0.0, 0)
        return splits.test or splits.val or splits.train
    for sub in (root, root / "test", root / "val"):
        if (sub / "images").is_dir():
            return pair_folder(sub)
    raise DataError(f"{root}: no images/ + masks/ (nor test/ or val/ holding them) to evaluate on")
