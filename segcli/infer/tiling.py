"""Sliding-window inference for images larger than the model should see at once.

Tiles overlap and are blended with a Gaussian weight (as nnU-Net and MONAI do): a tile's
border, where the network sees the least context, counts least, so no seams show.

Memory stays bounded whatever the image size: tiles are processed one row of tiles at a
time, and rows no later tile can touch are handed to a callback as soon as they are final.
Only a (C, tile, W) float32 band is held, never a full-resolution per-class buffer. The
blending normaliser is separable (the tile grid is a product of row and column starts),
so it is two 1-D vectors, not a full-resolution weight map.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np

# Tiles are raw HxWxC crops; the function returns C'xHxW probabilities for each.
TileFn = Callable[[list[np.ndarray]], list[np.ndarray]]
# Called with (first row, end row, C' x rows x W float32 probabilities), top to bottom.
RowSink = Callable[[int, int, np.ndarray], None]

# Above this many pixels a whole-image forward pass of a default U-Net needs several GB.
MAX_UNTILED_PIXELS = 2048 * 2048
# "Much larger than the training size": a side longer than this many training patches.
AUTO_TILE_FACTOR = 4
DEFAULT_TILE = 512


def round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def default_tile(train_size: Optional[int], size_multiple: int) -> int:
    """Twice the training patch (more context per pass than nnU-Net's 1x, same statistics)."""
    t = 2 * train_size if train_size else DEFAULT_TILE
    return max(round_up(t, size_multiple), 4 * size_multiple)


def choose_tile(h: int, w: int, tile: Optional[int], train_size: Optional[int], size_multiple: int) -> int:
    """The tile side for an HxW image; 0 means run the whole image at once.

    `tile`: None = automatic, 0 = never tile, N = tile with N-pixel tiles.
    Automatic tiling happens when a side is much larger than the training patch, or when a
    whole-image pass would not fit comfortably in memory.
    """
    if tile is not None:
        return round_up(tile, size_multiple) if tile > 0 else 0
    t = default_tile(train_size, size_multiple)
    too_big = h * w > MAX_UNTILED_PIXELS
    much_larger = bool(train_size) and max(h, w) > AUTO_TILE_FACTOR * train_size
    return t if (too_big or much_larger) and max(h, w) > t else 0


def tile_starts(length: int, tile: int, step: int) -> list[int]:
    """Start offsets covering [0, length) with tiles of `tile`, evenly spread, at most `step` apart.

    The last tile ends exactly at the border (no tile hangs over the edge to be padded).
    """
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / step) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def gaussian_1d(n: int, sigma_scale: float = 1 / 8, floor: float = 1e-3) -> np.ndarray:
    """A Gaussian bump over n pixels (sigma = n/8, nnU-Net's choice), peak 1, floored above 0
    so every pixel keeps some weight even where only one tile's border covers it."""
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2
    sigma = max(n * sigma_scale, 1e-6)
    g = np.exp(-(x**2) / (2 * sigma**2))
    return np.maximum(g / g.max(), floor).astype(np.float32)


def _coverage(length: int, starts: Sequence[int], weight: np.ndarray) -> np.ndarray:
    total = np.zeros(length, np.float32)
    for s in starts:
        total[s : s + len(weight)] += weight
    return total


def sliding_window(
    image: np.ndarray, tile_fn: TileFn, tile: int, sink: RowSink, overlap: float = 0.25,
    batch_size: int = 4,
) -> None:
    """Predict an HxWxC image tile by tile and hand finished rows of blended probabilities to `sink`."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError("overlap must be in [0, 1)")
    h, w = image.shape[:2]
    th, tw = min(tile, h), min(tile, w)
    ys = tile_starts(h, th, max(1, int(th * (1 - overlap))))
    xs = tile_starts(w, tw, max(1, int(tw * (1 - overlap))))
    gy, gx = gaussian_1d(th), gaussian_1d(tw)
    weight = gy[:, None] * gx[None, :]
    norm_y, norm_x = _coverage(h, ys, gy), _coverage(w, xs, gx)
    band: Optional[np.ndarray] = None  # blended sums for rows [lo, lo + band rows)
    lo = 0
    for i, y in enumerate(ys):
        rows = y + th - lo
        if band is None or band.shape[1] < rows:  # grow the band down to this tile row's bottom
            grown = np.zeros((band.shape[0] if band is not None else 0, rows, w), np.float32)
            if band is not None:
                grown[:, : band.shape[1]] = band
            band = grown
        for b in range(0, len(xs), batch_size):
            chunk = xs[b : b + batch_size]
            probs = tile_fn([image[y : y + th, x : x + tw] for x in chunk])
            if band.shape[0] == 0:  # channel count known after the first forward pass
                band = np.zeros((probs[0].shape[0], rows, w), np.float32)
            for x, p in zip(chunk, probs):
                band[:, y - lo : y - lo + th, x : x + tw] += p * weight
        end = ys[i + 1] if i + 1 < len(ys) else h  # rows above the next tile row are final
        done = band[:, : end - lo]
        done /= norm_y[lo:end, None] * norm_x[None, :]
        sink(lo, end, done)
        band = band[:, end - lo :].copy()
        lo = end
