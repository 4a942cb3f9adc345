"""Data: discovery of pairs, one validating scan, datasets and transforms.

Only the torch-free parts are imported here (inference through ONNX Runtime uses them);
`segcli.data.dataset` and `segcli.data.transforms` need torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from segcli.config import DataInfo
from segcli.data.discovery import Sample, Splits, discover, eval_samples, list_images
from segcli.data.io import IGNORE, read_image, read_mask
from segcli.data.scan import MaskStats, class_pixel_counts, infer_info, input_channels, scan_samples
from segcli.errors import DataError


@dataclass
class Prepared:
    splits: Splits
    info: DataInfo
    stats: MaskStats
    train_sizes: list[tuple[int, int]]
    val_sizes: list[tuple[int, int]]
    train_pixels: dict[int, int] = field(default_factory=dict)  # raw mask value -> pixels, train split only


def prepare(data: str, val_split: float, seed: int, ignore_index: Optional[int]) -> Prepared:
    """Discover the splits, check every pair and infer classes and channels from them."""
    splits = discover(data, val_split, seed)
    if not splits.val:
        raise DataError(f"{data}: no validation images; use --val-split > 0 or add DATA/val")
    train_stats = scan_samples(splits.train)
    train_sizes = list(train_stats.sizes)
    train_pixels = dict(train_stats.pixels)  # before the val scan adds to the same stats
    stats = scan_samples(splits.val, train_stats)
    val_sizes = stats.sizes[len(train_sizes) :]
    info = replace(infer_info(stats, splits.classes, ignore_index, splits.classes_file),
                   in_channels=input_channels(stats), colors=splits.colors)
    return Prepared(splits, info, stats, train_sizes, val_sizes, train_pixels)


def unlabeled_samples(folder: str) -> list[Sample]:
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: --unlabeled folder not found")
    images = list_images(root / "images" if (root / "images").is_dir() else root)
    if not images:
        raise DataError(f"{root}: no images found for --unlabeled")
    return [Sample(p, None) for p in images]


__all__ = [
    "IGNORE", "MaskStats", "Prepared", "Sample", "Splits", "class_pixel_counts", "discover",
    "eval_samples", "prepare", "read_image", "read_mask", "unlabeled_samples",
]
