"""`segcli check`: the checks train runs first, with every problem collected instead of the first raised.

Pairing, sizes, readability and mask values go through the same functions training uses
(discover, scan_samples, infer_info), one sample at a time so that one bad file does not hide
the next. On top: a class histogram, an image summary, warnings and suggested settings.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from segcli.config import DataInfo
from segcli.data import formats
from segcli.data.balance import auto_class_weights, suggest_img_size
from segcli.data.discovery import NO_LAYOUT, Sample, discover, list_images, read_classes, split_seeded
from segcli.data.scan import MaskStats, class_pixel_counts, infer_info, input_channels, scan_samples
from segcli.data.io import image_mode
from segcli.errors import DataError

IMBALANCE_SHARE = 0.01  # a class under 1% of labelled pixels is "rare"
IMBALANCE_RATIO = 50.0  # or 50x rarer than the most common class
TINY_SHARE = 0.01  # a class covering under 1% of the images it appears in is "small objects"


@dataclass
class Problem:
    message: str
    files: list[str] = field(default_factory=list)

    def line(self, preview: int = 5) -> str:
        if len(self.files) == 1:
            return f"{self.files[0]}: {self.message}"
        if not self.files:
            return self.message
        shown = ", ".join(self.files[:preview])
        more = f" and {len(self.files) - preview} more" if len(self.files) > preview else ""
        return f"{self.message} ({len(self.files)} files: {shown}{more})"


@dataclass
class CheckReport:
    data: str
    layout: str = "flat"
    format: str = "plain"
    ok: bool = True
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)
    images: dict[str, Any] = field(default_factory=dict)
    binary: Optional[bool] = None
    num_classes: Optional[int] = None
    ignore_index: Optional[int] = None
    classes: list[dict[str, Any]] = field(default_factory=list)
    suggestions: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["problems"] = [{"message": p.message, "files": p.files, "text": p.line()} for p in self.problems]
        return d


@dataclass
class _Scanned:
    split: str
    sample: Sample
    stats: MaskStats
    mode: str


def _error_file(e: Exception, fallback: Path) -> tuple[str, str]:
    """Split a DataError's 'path: message' so the path can be listed on its own."""
    text = str(e)
    head, sep, tail = text.partition(": ")
    return (head, tail) if sep and ("/" in head or "." in head) else (str(fallback), text)


def _pair_collect(root: Path, problems: list[Problem]) -> list[Sample]:
    """pair_folder's rules, but every orphan and duplicate is reported rather than the first kind found."""
    img_dir, mask_dir = root / "images", root / "masks"
    missing = [d for d in (img_dir, mask_dir) if not d.is_dir()]
    for d in missing:
        problems.append(Problem("folder not found; a dataset holds images/ and masks/ side by side", [str(d)]))
    if missing:
        return []
    images, masks = list_images(img_dir), list_images(mask_dir)
    if not images:
        problems.append(Problem("no images (png, jpg, tif, bmp, webp) found", [str(img_dir)]))
    by_stem: dict[str, Path] = {}
    for m in masks:
        if m.stem in by_stem:
            problems.append(Problem(f"two masks share the stem '{m.stem}' ({by_stem[m.stem].name}); keep one", [str(m)]))
        else:
            by_stem[m.stem] = m
    seen: set[str] = set()
    pairs = []
    for p in images:
        if p.stem in seen:
            problems.append(Problem(f"two images share the stem '{p.stem}'; rename one", [str(p)]))
            continue
        seen.add(p.stem)
        if p.stem in by_stem:
            pairs.append(Sample(p, by_stem[p.stem]))
        else:
            problems.append(Problem(f"image without a mask: add {mask_dir}/{p.stem}.png or remove the image", [str(p)]))
    for m in masks:
        if m.stem not in seen:
            problems.append(Problem(f"mask without an image: add its image to {img_dir} or remove the mask", [str(m)]))
    return pairs


def _collect_splits(root: Path, val_split: float, seed: int, report: CheckReport) -> dict[str, list[Sample]]:
    problems = report.problems
    if (root / "train").is_dir():
        report.layout = "split"
        splits = {"train": _pair_collect(root / "train", problems)}
        if (root / "val").is_dir():
            splits["val"] = _pair_collect(root / "val", problems)
        else:
            problems.append(Problem("folder not found; a split dataset needs train/ and val/", [str(root / "val")]))
            splits["val"] = []
        if (root / "test").is_dir():
            splits["test"] = _pair_collect(root / "test", problems)
        return splits
    if not (root / "images").is_dir():
        problems.append(Problem(NO_LAYOUT, [str(root)]))
        return {}
    train, val = split_seeded(_pair_collect(root, problems), val_split, seed)
    return {"train": train, "val": val}


def _scan_each(splits: dict[str, list[Sample]], problems: list[Problem]) -> list[_Scanned]:
    scanned = []
    for name, samples in splits.items():
        for s in samples:
            st = MaskStats()
            try:
                scan_samples([s], st)
                mode = image_mode(s.image)
            except DataError as e:
                file, msg = _error_file(e, s.mask or s.image)
                problems.append(Problem(msg, [file]))
                continue
            scanned.append(_Scanned(name, s, st, mode))
    return scanned


def _merge(items: list[_Scanned]) -> MaskStats:
    total = MaskStats()
    for it in items:
        for v, n in it.stats.pixels.items():
            total.pixels[v] = total.pixels.get(v, 0) + n
            total.images[v] = total.images.get(v, 0) + 1
            total.files_with.setdefault(v, it.sample.mask)
        total.channels |= it.stats.channels
        for k, f in it.stats.channel_files.items():
            total.channel_files.setdefault(k, f)
        total.sizes += it.stats.sizes
    return total


def _infer(stats: MaskStats, items: list[_Scanned], classes: list[str], ignore_index: Optional[int],
           classes_file: object, problems: list[Problem]) -> DataInfo:
    """infer_info, and on a value outside classes.txt, every mask holding one (grouped per value)."""
    try:
        return infer_info(stats, classes, ignore_index, classes_file)  # type: ignore[arg-type]
    except DataError as e:
        k = len(classes)
        ignore = 255 if ignore_index is None else ignore_index
        by_value: dict[int, list[str]] = {}
        for it in items:
            for v in it.stats.pixels:
                if classes and v >= k and v != ignore:
                    by_value.setdefault(v, []).append(str(it.sample.mask))
        for v, files in sorted(by_value.items()):
            problems.append(Problem(f"mask value {v} is not a class of {classes_file} ({k} classes); fix "
                                    f"the mask, add the class, or pass --ignore-index {v} if it marks void pixels", files))
        if not by_value:
            file, msg = _error_file(e, Path(str(classes_file)))
            problems.append(Problem(msg, [file]))
        return DataInfo(num_classes=max(k, 2), classes=classes, ignore_index=ignore, binary=False)


def _image_summary(items: list[_Scanned]) -> dict[str, Any]:
    sizes = [it.stats.sizes[0] for it in items]
    if not sizes:
        return {"count": 0}
    by_area = sorted(sizes, key=lambda s: s[0] * s[1])
    common = Counter(f"{w}x{h}" for w, h in sizes).most_common(3)
    channels = Counter(_kind(next(iter(it.stats.channels))) for it in items)
    try:
        in_channels = input_channels(_merge(items))
    except DataError:
        in_channels = None  # mixed band counts: reported as a problem by check_dataset
    return {
        "count": len(sizes), "min_size": list(by_area[0]), "max_size": list(by_area[-1]),
        "median_short_side": int(np.median([min(s) for s in sizes])), "distinct_sizes": len(set(sizes)),
        "common_sizes": dict(common), "channels": dict(channels), "modes": dict(Counter(it.mode for it in items)),
        "in_channels": in_channels,
    }


def _kind(bands: int) -> str:
    return "gray" if bands == 1 else "colour" if bands == 3 else f"{bands} bands"


def _class_table(info: DataInfo, items: list[_Scanned], train_items: list[_Scanned]) -> list[dict[str, Any]]:
    counts = class_pixel_counts(_merge(items), info)
    train_counts = class_pixel_counts(_merge(train_items), info)
    labelled = max(int(counts.sum()), 1)
    images = np.zeros(info.num_classes, np.int64)
    area = np.zeros(info.num_classes, np.float64)  # summed per-image share, where the class is present
    for it in items:
        w, h = it.stats.sizes[0]
        per = class_pixel_counts(it.stats, info)
        images += per > 0
        area += np.where(per > 0, per / max(w * h, 1), 0.0)
    names = info.class_names()
    return [{
        "index": i, "name": names[i] if i < len(names) else f"class_{i}", "pixels": int(counts[i]),
        "share": counts[i] / labelled, "images": int(images[i]), "train_pixels": int(train_counts[i]),
        "mean_area": float(area[i] / images[i]) if images[i] else 0.0,
    } for i in range(info.num_classes)]


def _advise(report: CheckReport, info: DataInfo, items: list[_Scanned], train_items: list[_Scanned]) -> None:
    rows, warn = report.classes, report.warnings
    present = [r for r in rows if r["pixels"] > 0]
    for r in rows:
        if r["train_pixels"] == 0:
            warn.append(f"class {r['index']} ({r['name']}) has no pixels in the training masks; the model cannot learn it")
    imbalanced = False
    if len(present) >= 2:
        top = max(present, key=lambda r: r["share"])
        rare = min(present, key=lambda r: r["share"])
        if rare["share"] < IMBALANCE_SHARE or top["share"] / rare["share"] > IMBALANCE_RATIO:
            imbalanced = True
            warn.append(f"heavy class imbalance: {rare['name']} is {rare['share']:.2%} of labelled pixels, "
                        f"{top['share'] / rare['share']:.0f}x rarer than {top['name']}; "
                        "consider --class-weights auto or --loss focal")
    fg = rows[1:] if info.binary else rows
    for r in fg:
        if r["images"] and r["mean_area"] < TINY_SHARE:
            warn.append(f"small objects: {r['name']} covers on average {r['mean_area']:.2%} of the images it "
                        "appears in; train with a large --img-size and consider --loss focal")
    chans = report.images.get("channels", {})
    if len(chans) > 1 and set(chans) <= {"gray", "colour"}:
        warn.append(f"mixed gray ({chans.get('gray')}) and colour ({chans.get('colour')}) images: "
                    "the model takes 3 channels and gray images are repeated")
    if 0 < len(train_items) < 8:
        warn.append(f"only {len(train_items)} training images; expect a weak model (augmentation helps, but more data helps more)")
    sugg = report.suggestions
    sugg["img_size"] = suggest_img_size([it.stats.sizes[0] for it in train_items])
    train_counts = [r["train_pixels"] for r in rows]
    if sum(train_counts):
        sugg["class_weights"] = auto_class_weights(train_counts)
        sugg["use_class_weights"] = imbalanced
    if info.ignore_index is not None and not info.binary:
        sugg["ignore_index"] = info.ignore_index


def _plain(root: Path, val_split: float, seed: int, report: CheckReport) -> tuple[dict[str, list[Sample]], list[str]]:
    """The plain layout: every pairing problem collected, then the same refusals as discover()."""
    try:
        classes = read_classes(root)
    except DataError as e:
        file, msg = _error_file(e, root / "classes.txt")
        report.problems.append(Problem(msg, [file]))
        classes = []
    splits = _collect_splits(root, val_split, seed, report)
    if not report.problems:
        try:  # whatever discover() refuses must not pass here either
            discover(root, val_split, seed)
        except DataError as e:
            file, msg = _error_file(e, root)
            report.problems.append(Problem(msg, [file]))
    if report.layout == "flat" and splits and not splits["val"]:  # split layouts: reported by _pair_collect
        report.problems.append(Problem("no validation images; use --val-split > 0 or add DATA/val", [str(root)]))
    return splits, classes


def _collect_format(root: Path, fmt: str, val_split: float, seed: int,
                    report: CheckReport) -> tuple[dict[str, list[Sample]], list[str], object]:
    """A COCO / VOC / Cityscapes folder through the reader train uses (its first error, if any)."""
    report.format = fmt
    try:
        splits = formats.read(root, fmt, val_split, seed)
    except DataError as e:
        file, msg = _error_file(e, root)
        report.problems.append(Problem(msg, [file]))
        return {}, [], root
    if not splits.val:
        report.problems.append(Problem("no validation images; use --val-split > 0", [str(root)]))
    report.layout = splits.layout
    return splits.parts(), splits.classes, splits.classes_file


def check_dataset(data: str | Path, val_split: float = 0.2, seed: int = 0,
                  ignore_index: Optional[int] = None) -> CheckReport:
    """Everything `segcli check` reports; never raises for a problem in the data itself."""
    root = Path(data)
    report = CheckReport(str(data))
    if not root.is_dir():
        report.problems.append(Problem("dataset folder not found" if not root.exists() else
                                       "not a folder; pass a dataset folder holding images/ and masks/", [str(root)]))
        report.ok = False
        return report
    fmt = formats.detect(root)
    if fmt is None:
        splits, classes = _plain(root, val_split, seed, report)
        classes_file: object = root / "classes.txt"
    else:
        splits, classes, classes_file = _collect_format(root, fmt, val_split, seed, report)
    report.splits = {k: len(v) for k, v in splits.items()}
    scanned = _scan_each(splits, report.problems)
    used = [it for it in scanned if it.split in ("train", "val")]  # what train infers the classes from
    if used:
        _summarise(report, used, scanned, classes, classes_file, ignore_index)
    report.ok = not report.problems
    return report


def _summarise(report: CheckReport, used: list[_Scanned], scanned: list[_Scanned], classes: list[str],
               classes_file: object, ignore_index: Optional[int]) -> None:
    """Classes, image summary, class table, warnings and suggestions from the scanned samples."""
    merged = _merge(used)
    info = _infer(merged, used, classes, ignore_index, classes_file, report.problems)
    report.binary, report.num_classes, report.ignore_index = info.binary, info.num_classes, info.ignore_index
    try:
        input_channels(merged)
    except DataError as e:
        file, msg = _error_file(e, Path(report.data))
        report.problems.append(Problem(msg, [file]))
    report.images = _image_summary(scanned)
    report.images["ignored_share"] = merged.pixels.get(info.ignore_index, 0) / max(sum(merged.pixels.values()), 1)
    train_items = [it for it in used if it.split == "train"]
    report.classes = _class_table(info, used, train_items)
    _advise(report, info, used, train_items)
