"""Diversity in proportion to the pool: each pick stands for its share of the pool's images.

Why not only "far from each other" (select.pick's k-centre): a pool is rarely balanced. Video
frames come in sequences of very different sizes, and the images a model handles worst are often
a rare kind (night scenes, a different scanner). Ranking by the signal and spreading the picks
apart fills the labelled set with that rare kind, two to three times its share of the pool, while
the images the model will mostly meet stay under-sampled.

So the pool is split in two by 2-means over the images' fingerprints, the picks are shared
between the halves in proportion to their sizes, and each half is split again with its share,
until every part holds one pick: its most promising image. A kind of image that is a tenth of the
pool gets a tenth of the picks, as in a random draw, however spread out its fingerprints are
(plain k-means with one group per pick would give a spread-out kind more groups than its share),
and within each part the model's signal chooses the image that would teach it most. Copies of an
image fall in one part, so they are picked together only where that part's share says so.

Memory: a fixed random projection of each fingerprint (PROJECTED numbers, float16) is kept for
every pool image with its signal, ~100 bytes an image beside the list of paths the command holds
anyway (~100 MB for a million images; 200,000 measured: 20 MB kept, 103 MB at the peak of cutting
the parts, 1.2 s for 1,000 picks). Each 2-means is fitted on at most FIT_ROWS of its part's images
and assigns the rest.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

PROJECTED = 32  # numbers kept per pool image
BLOCK = 4096  # rows of projected fingerprints allocated at a time
FIT_ROWS = 20_000  # each 2-means is fitted on at most this many images (a seeded sample)
ITERATIONS = 20


@dataclass
class PoolTable:
    """Every readable pool image, in stream order: its path, signal and projected fingerprint."""

    dims: int  # the fingerprint's length
    paths: list[Path] = field(default_factory=list)
    priority: array = field(default_factory=lambda: array("d"))
    estimate: array = field(default_factory=lambda: array("d"))  # nan: none
    entropy: array = field(default_factory=lambda: array("d"))  # nan: none
    blocks: list[np.ndarray] = field(default_factory=list)  # BLOCK x PROJECTED float16 each, the last one partly filled

    def __post_init__(self) -> None:
        # a fixed projection (not --seed's): the same pool always gives the same distances
        rng = np.random.default_rng(0)
        self.projection = (rng.standard_normal((self.dims, PROJECTED)) / np.sqrt(PROJECTED)).astype(np.float32)

    def add(self, path: Path, priority: float, estimate: Optional[float], entropy: Optional[float],
            features: np.ndarray) -> None:
        self.paths.append(path)
        self.priority.append(priority)
        self.estimate.append(np.nan if estimate is None else estimate)
        self.entropy.append(np.nan if entropy is None else entropy)
        i = len(self.paths) - 1
        if i % BLOCK == 0:
            self.blocks.append(np.empty((BLOCK, PROJECTED), np.float16))
        self.blocks[-1][i % BLOCK] = features.astype(np.float32) @ self.projection

    def features(self) -> np.ndarray:
        """The projected fingerprints, one row per image (float32)."""
        if not self.blocks:
            return np.zeros((0, PROJECTED), np.float32)
        return np.concatenate(self.blocks).astype(np.float32)[: len(self.paths)]


def _sq_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] - 2 * x @ centres.T + (centres * centres).sum(1)[None, :]
    return np.maximum(d, 0.0)


def two_means(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A boolean split of the rows of `x` by 2-means (k-means++ seeding), fitted on at most FIT_ROWS
    of them; all False where the rows are all the same point."""
    fit = x if len(x) <= FIT_ROWS else x[rng.choice(len(x), FIT_ROWS, replace=False)]
    a = fit[rng.integers(len(fit))]
    d = _sq_distances(fit, a[None])[:, 0]
    if d.sum() <= 0:
        return np.zeros(len(x), bool)
    c = np.stack([a, fit[rng.choice(len(fit), p=d / d.sum())]])
    for _ in range(ITERATIONS):
        side = _sq_distances(fit, c).argmin(1).astype(bool)
        if side.all() or not side.any():
            break
        moved = np.stack([fit[~side].mean(0), fit[side].mean(0)])
        if np.allclose(moved, c):
            break
        c = moved
    return _sq_distances(x, c).argmin(1).astype(bool)


@dataclass
class Group:
    """One pick of the spread: the table row, its part's size, the distance to the nearest other pick."""

    row: int
    size: int  # the pool images of the part it was picked from (its share of the pool)
    distance: Optional[float] = None


def shares(x: np.ndarray, rows: np.ndarray, seats: int, rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
    """The parts of `rows` (indices into x) with their picks: split in two, picks shared in proportion,
    until each part holds one pick (or cannot be split: copies of one image). Depth first, left half
    first, with a stack: a pool whose splits keep peeling off a few images never hits the recursion limit."""
    out: list[tuple[np.ndarray, int]] = []
    todo = [(rows, seats)]
    while todo:
        rows, seats = todo.pop()
        side = two_means(x[rows], rng) if 1 < seats < len(rows) else None
        if side is None or not side.any() or side.all():
            out.append((rows, seats))
            continue
        left, right = rows[~side], rows[side]
        k = int(np.floor(seats * len(left) / len(rows) + 0.5))
        k = min(max(k, seats - len(right)), len(left))
        todo += [(part, s) for part, s in ((right, seats - k), (left, k)) if s > 0]
    return out


def spread(table: PoolTable, count: int, seed: int) -> list[Group]:
    """`count` rows of `table` (most promising first), each the most promising image of a part of the
    pool that holds the pick's share of it."""
    n = len(table.paths)
    x = table.features()
    priority = np.asarray(table.priority)
    picks: list[Group] = []
    for rows, s in shares(x, np.arange(n), min(count, n), np.random.default_rng(seed)):
        best = rows[np.lexsort((rows, priority[rows]))][:s]  # most promising, ties by position
        picks += [Group(int(r), len(rows)) for r in best]
    picks.sort(key=lambda g: (priority[g.row], g.row))
    for i, g in enumerate(picks[1:], 1):
        earlier = x[[h.row for h in picks[:i]]]
        g.distance = round(float(np.sqrt(_sq_distances(x[g.row : g.row + 1], earlier).min())), 4)
    return picks
