"""One pass over a dataset before training: check every pair, learn what the data is.

Reads image headers and full masks (masks are small and their value sets matter), so a bad
file is reported before the first step rather than an hour into a run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from segcli.config import DataInfo
from segcli.data.io import IGNORE, image_size, read_mask
from segcli.data.samples import Sample
from segcli.data.tiff import is_tiff, stack_header
from segcli.errors import DataError

_GRAY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}


@dataclass
class MaskStats:
    """Raw mask values across a set of masks: pixels and images per value."""

    pixels: dict[int, int] = field(default_factory=dict)
    images: dict[int, int] = field(default_factory=dict)
    files_with: dict[int, Path] = field(default_factory=dict)  # first file holding each value
    channels: set[int] = field(default_factory=set)
    channel_files: dict[int, Path] = field(default_factory=dict)  # first image with each band count
    sizes: list[tuple[int, int]] = field(default_factory=list)

    @property
    def values(self) -> list[int]:
        return sorted(self.pixels)


def _channels_from_header(path: Path) -> int:
    """Channels from the header, plus a cheap integrity check that needs no decoding.

    PNG: verify() walks every chunk and checks its CRC. JPEG: the file must end with the EOI
    marker; when it doesn't (a trailer, or truncation) the image is decoded to decide.
    Other formats (and TIFF stacks: their band count) are decoded before training by the preload
    (or verify_decodable).
    """
    stack = stack_header(path) if is_tiff(path) else None
    if stack is not None:
        return stack.bands
    try:
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore")
            channels = 1 if im.mode in _GRAY_MODES else 3
            fmt = im.format
            if fmt == "PNG":
                im.verify()
        if fmt == "JPEG" and not _ends_with_eoi(path):
            with Image.open(path) as im:
                im.load()
    except Exception as e:
        raise DataError(f"{path}: damaged or not an image ({type(e).__name__}: {e}); "
                        "re-save it (e.g. as PNG) or remove it") from None
    return channels


def _ends_with_eoi(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 64))
        return b"\xff\xd9" in f.read().rstrip(b"\x00\r\n ")[-2:]


def verify_decodable(samples: list[Sample], threads: int = 4) -> None:
    """Decode every image once (nothing kept): for runs that don't preload, so a damaged file
    fails now rather than epochs later. Masks were fully read by the scan already."""
    from concurrent.futures import ThreadPoolExecutor

    from segcli.data.io import read_image

    with ThreadPoolExecutor(threads) as pool:  # PIL decoders release the GIL
        for _ in pool.map(lambda s: read_image(s.image).shape, samples):
            pass


def scan_samples(samples: list[Sample], stats: Optional[MaskStats] = None) -> MaskStats:
    stats = stats or MaskStats()
    for s in samples:
        size = image_size(s.image)
        bands = _channels_from_header(s.image)
        stats.channels.add(bands)
        stats.channel_files.setdefault(bands, s.image)
        stats.sizes.append(size)
        if s.mask is None:
            continue
        raw = read_mask(s.mask)
        if (raw.shape[1], raw.shape[0]) != size:
            raise DataError(
                f"{s.mask}: mask is {raw.shape[1]}x{raw.shape[0]} but its image {s.image.name} is "
                f"{size[0]}x{size[1]}; masks must match their image's size"
            )
        counts = np.bincount(raw.ravel()) if raw.dtype == np.uint8 else None
        if counts is not None:
            values = np.nonzero(counts)[0]
            pix = counts[values]
        else:
            values, pix = np.unique(raw, return_counts=True)
        for v, n in zip(values.tolist(), pix.tolist()):
            stats.pixels[v] = stats.pixels.get(v, 0) + n
            stats.images[v] = stats.images.get(v, 0) + 1
            stats.files_with.setdefault(v, s.mask)
    return stats


def input_channels(stats: MaskStats) -> int:
    """The model's input channels: 1 for all-gray data, 3 for colour (gray images are repeated),
    else the one band count every image has (TIFF stacks)."""
    bands = stats.channels
    if bands <= {1, 3}:
        return 1 if bands == {1} else 3
    if len(bands) == 1:
        return next(iter(bands))
    counts = sorted(bands)
    a, b = stats.channel_files[counts[-1]], stats.channel_files[counts[0]]
    raise DataError(f"{b}: {counts[0]} band(s), but {a.name} has {counts[-1]}; a model takes one band count, "
                    "so every image needs the same bands")


def infer_info(
    stats: MaskStats, classes: list[str], ignore_index: Optional[int], classes_file: Optional[Path] = None
) -> DataInfo:
    """Binary vs multi-class, class count and ignore index from the masks (and classes.txt)."""
    values = set(stats.values)
    labelled = values - {ignore_index} if ignore_index is not None else values
    binary = labelled <= {0, 255} or labelled <= {0, 1}
    if classes and len(classes) > 2:
        binary = False
    if classes and len(classes) > 2 and values and values <= {0, 255} and ignore_index is None:
        raise DataError(
            f"{classes_file}: names {len(classes)} classes but every mask holds only 0 and 255 (binary); "
            "list 2 classes, or fix the masks to hold class indices 0..K-1"
        )
    if not binary and ignore_index is None:
        ignore_index = 255  # the contract's default for multi-class data
        labelled.discard(255)
    if binary:
        if classes and len(classes) != 2:
            raise DataError(f"{classes_file}: names {len(classes)} classes but the masks are binary; list 2")
        return DataInfo(num_classes=2, classes=classes, ignore_index=ignore_index, binary=True)
    top = max(labelled) if labelled else 0
    num_classes = len(classes) if classes else top + 1
    if top >= num_classes:
        raise DataError(
            f"{stats.files_with[top]}: mask value {top} is not a class of {classes_file} "
            f"({num_classes} classes); fix the mask, add the class, or pass --ignore-index {top}"
        )
    if num_classes > IGNORE:
        raise DataError(f"{stats.files_with[top]}: {num_classes} classes; segcli supports at most 255")
    return DataInfo(num_classes=num_classes, classes=classes, ignore_index=ignore_index, binary=False)


def class_pixel_counts(stats: MaskStats, info: DataInfo) -> np.ndarray:
    """Pixels per class (after the binary / ignore mapping), for weights and summaries."""
    counts = np.zeros(info.num_classes, dtype=np.int64)
    for v, n in stats.pixels.items():
        if v == info.ignore_index:
            continue
        k = int(v > 0) if info.binary else v
        if k < info.num_classes:
            counts[k] += n
    return counts
