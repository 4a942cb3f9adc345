"""Diversity in proportion to the pool: k-means over every pool image's fingerprint, one group per
pick, and from each group its most promising image.

Why not only "far from each other" (select.pick's k-centre): a pool is rarely balanced. Video
frames come in sequences of very different sizes, and the images a model handles worst are often
a rare kind (night scenes, a different scanner). Ranking by the signal and spreading the picks
apart fills the labelled set with that rare kind, two to three times its share of the pool, while
the images the model will mostly meet stay under-sampled. k-means groups follow the pool's mass:
a kind of image that is half of the pool gets about half of the groups, so the picks keep the
pool's mix as a random draw does, and within each group the model's signal chooses the image
that would teach it most.

Memory: a fixed random projection of each fingerprint (PROJECTED numbers, float16) is kept for
every pool image, ~100 bytes an image with its signal: ~100 MB for a million images. k-means is
fitted on at most FIT_ROWS of them and assigns the rest in chunks.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

PROJECTED = 32  # numbers kept per pool image
FIT_ROWS = 20_000  # k-means is fitted on at most this many images (a seeded sample)
ITERATIONS = 25


@dataclass
class PoolTable:
    """Every readable pool image, in stream order: its path, signal and projected fingerprint."""

    dims: int  # the fingerprint's length
    paths: list[Path] = field(default_factory=list)
    priority: array = field(default_factory=lambda: array("d"))
    estimate: array = field(default_factory=lambda: array("d"))  # nan: none
    entropy: array = field(default_factory=lambda: array("d"))  # nan: none
    rows: list[np.ndarray] = field(default_factory=list)

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
        self.rows.append((features.astype(np.float32) @ self.projection).astype(np.float16))

    def features(self) -> np.ndarray:
        return np.stack(self.rows).astype(np.float32) if self.rows else np.zeros((0, PROJECTED), np.float32)


def _sq_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] - 2 * x @ centres.T + (centres * centres).sum(1)[None, :]
    return np.maximum(d, 0.0)


def assign(x: np.ndarray, centres: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """The nearest centre of each row (in chunks: bounded memory for a million rows)."""
    return np.concatenate([_sq_distances(x[i : i + chunk], centres).argmin(1) for i in range(0, len(x), chunk)]
                          or [np.zeros(0, np.int64)])


def kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """`k` centres (k-means++ seeding, then Lloyd's iterations) of at most FIT_ROWS rows of `x`."""
    rng = np.random.default_rng(seed)
    fit = x if len(x) <= FIT_ROWS else x[rng.choice(len(x), FIT_ROWS, replace=False)]
    fit = fit.astype(np.float64)
    centres = [fit[rng.integers(len(fit))]]
    nearest = _sq_distances(fit, np.array(centres))[:, 0]
    for _ in range(1, k):
        total = nearest.sum()
        i = int(rng.choice(len(fit), p=nearest / total)) if total > 0 else int(rng.integers(len(fit)))
        centres.append(fit[i])
        nearest = np.minimum(nearest, _sq_distances(fit, fit[i : i + 1])[:, 0])
    c = np.array(centres)
    for _ in range(ITERATIONS):
        labels = _sq_distances(fit, c).argmin(1)
        sums = np.zeros_like(c)
        np.add.at(sums, labels, fit)
        counts = np.bincount(labels, minlength=k)
        moved = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], c)
        if np.allclose(moved, c):
            break
        c = moved
    return c


@dataclass
class Group:
    """One pick of the spread: the table row, its group's size, the distance to the nearest other pick."""

    row: int
    size: int
    groups: int  # the non-empty groups of the pool
    distance: Optional[float] = None


def spread(table: PoolTable, count: int, seed: int) -> list[Group]:
    """`count` rows of `table`, most promising first: the most promising image of each of `count`
    k-means groups. Where groups come out empty (fewer kinds of image than picks), their places go
    to the groups in proportion to their sizes (D'Hondt), each taking its next most promising image."""
    n = len(table.paths)
    if n == 0:
        return []
    x = table.features()
    priority = np.asarray(table.priority)
    order = np.lexsort((np.arange(n), priority))  # most promising first, ties by position
    labels = assign(x, kmeans(x, min(count, n), seed)) if count < n else np.arange(n)
    sizes = np.bincount(labels)
    members: dict[int, list[int]] = {}
    for r in order:
        members.setdefault(int(labels[r]), []).append(int(r))
    taken = {g: 1 for g in members}
    while sum(taken.values()) < min(count, n):
        g = max((g for g in members if taken[g] < len(members[g])), key=lambda g: (sizes[g] / (taken[g] + 1), -g))
        taken[g] += 1
    rows = sorted((r for g, t in taken.items() for r in members[g][:t]), key=lambda r: (priority[r], r))
    groups = [Group(r, int(sizes[labels[r]]), len(members)) for r in rows]
    for i, g in enumerate(groups[1:], 1):
        earlier = x[[h.row for h in groups[:i]]]
        g.distance = round(float(np.sqrt(_sq_distances(x[g.row : g.row + 1], earlier).min())), 4)
    return groups
