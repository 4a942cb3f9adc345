"""Scoring a pool of unlabelled images for `segcli select`: each image's estimate (or entropy) and
a small layout fingerprint, streamed through the Predictor with memory bounded by a shortlist.

The model runs over the pool exactly as `segcli predict --quality` does (segcli.infer.pipeline:
decoding ahead on threads, same-size images batched), but no file is written: per image only a
number is kept for the pool ranks, and the fingerprints of the `keep` most promising images in a
heap, so a pool of a million images needs megabytes, not gigabytes (with a `PoolTable` for the
spread over the whole pool: ~100 bytes an image more, select.spread).
"""

from __future__ import annotations

import heapq
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from segcli.data.io import check_channels, image_size, read_image
from segcli.errors import DataError
from segcli.infer.pipeline import prefetch, segment_stream
from segcli.infer.predictor import Predictor
from segcli.infer.select.spread import PoolTable
from segcli.quality import pixel_maps

GRID = 4  # the fingerprint: class shares and mean error probability in GRID x GRID cells
SAMPLE = 64  # pixels sampled per side for the fingerprint (it describes layout, not detail)


@dataclass
class Candidate:
    """One pool image: its signal (`priority`, lower = labelled first) and its fingerprint."""

    path: Path
    order: int  # position in the pool: ties are broken by it, so a selection is reproducible
    priority: float
    estimate: Optional[float] = None  # the calibrated quality estimate, when the model has an estimator
    entropy: Optional[float] = None  # the mean normalised entropy (strategy entropy)
    features: Optional[np.ndarray] = None


@dataclass
class Scored:
    """The shortlist (worst first), every readable image's priority and the unreadable images."""

    shortlist: list[Candidate]
    priorities: np.ndarray
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0
    table: Optional[PoolTable] = None  # every image's signal and fingerprint (the spread over the pool)

    def pool_rank(self, cand: Candidate) -> int:
        """1 for the pool's most promising image by the signal alone (ties share the better rank)."""
        return int(np.searchsorted(self.priorities, cand.priority, side="left")) + 1


def fingerprint(labels: np.ndarray, error: Optional[np.ndarray], k: int) -> np.ndarray:
    """Where each class is and where the model doubts: per cell of a GRID x GRID grid, the share of
    each predicted class and (with an error map) the mean error probability; float32, length
    GRID*GRID*(k+1). Frames of one video give nearly the same vector; different scenes do not."""
    h, w = labels.shape
    ys = np.linspace(0, h - 1, min(h, SAMPLE)).astype(np.int64)
    xs = np.linspace(0, w - 1, min(w, SAMPLE)).astype(np.int64)
    cell = (ys * GRID // h)[:, None] * GRID + (xs * GRID // w)[None, :]
    sizes = np.bincount(cell.ravel(), minlength=GRID * GRID).astype(np.float32)
    lab = np.minimum(labels[np.ix_(ys, xs)].astype(np.int64), k - 1)
    shares = np.bincount((cell * k + lab).ravel(), minlength=GRID * GRID * k).astype(np.float32)
    shares = (shares.reshape(GRID * GRID, k) / np.maximum(sizes, 1)[:, None]).ravel()
    if error is None:
        err = np.zeros(GRID * GRID, np.float32)
    else:
        e = error[np.ix_(ys, xs)].astype(np.float32) / 255.0
        err = np.bincount(cell.ravel(), weights=e.ravel(), minlength=GRID * GRID).astype(np.float32)
        err /= np.maximum(sizes, 1)
    return np.concatenate([shares, err]) / GRID  # cells weigh 1/GRID each: distances stay near [0, 2]


def mean_entropy(probs: np.ndarray, binary: bool) -> float:
    """The mean normalised entropy (0: certain everywhere, 1: uniform) of C'xHxW probabilities."""
    return float(pixel_maps(probs, binary, entropy=True)["entropy"].mean(dtype=np.float64))


def header_pixels(path: Path) -> int:
    try:
        w, h = image_size(path)
    except DataError:
        return 0  # the read reports it
    return w * h


def _in_memory(key: object) -> Callable[[tuple[int, ...]], np.ndarray]:
    return lambda shape: np.empty(shape, np.float16)


class Shortlist:
    """The `keep` candidates of lowest priority seen so far (a max-heap on priority, then order)."""

    def __init__(self, keep: int) -> None:
        self.keep = max(1, keep)
        self.heap: list[tuple[float, int, Candidate]] = []

    def offer(self, cand: Candidate) -> None:
        item = (-cand.priority, -cand.order, cand)
        if len(self.heap) < self.keep:
            heapq.heappush(self.heap, item)
        elif item > self.heap[0]:  # lower priority (or equal and earlier) than the worst kept
            heapq.heapreplace(self.heap, item)

    def ranked(self) -> list[Candidate]:
        return sorted((c for _, _, c in self.heap), key=lambda c: (c.priority, c.order))


def score_pool(predictor: Predictor, paths: Iterable[Path], signal: str, keep: int,
               on_unreadable: Optional[Callable[[Path, str], None]] = None, workers: int = 2,
               table: bool = False) -> Scored:
    """Run the model over `paths`; `signal`: "quality" (the estimate, lowest first; the predictor must
    have `quality` on) or "entropy" (highest mean entropy first). `table`: also keep every image's
    signal and projected fingerprint (Scored.table)."""
    t0 = time.perf_counter()
    info = predictor.info
    k = 2 if info.binary else info.num_classes
    short, priorities, unreadable = Shortlist(keep), array("d"), []
    rows = PoolTable(GRID * GRID * (k + 1)) if table else None

    def load(path: Path) -> np.ndarray:
        return check_channels(read_image(path), info.in_channels, path)

    loaded = prefetch(paths, load, header_pixels, workers, max_ahead=2 * predictor.batch_size + 2)
    order = 0
    for s in segment_stream(predictor, loaded, lambda im: im, signal == "entropy", _in_memory):
        path = s.item.key
        if s.item.error is not None:
            unreadable.append((path, s.item.error))
            if on_unreadable:
                on_unreadable(path, s.item.error)
            continue
        seg = s.seg
        cand = Candidate(path, order, 0.0, seg.quality, features=fingerprint(seg.labels, seg.error, k))
        if signal == "entropy":
            cand.entropy = round(mean_entropy(seg.probs, info.binary), 4)
            cand.priority = -cand.entropy
        else:
            assert seg.quality is not None, "score_pool(signal='quality') needs predictor.quality"
            cand.priority = seg.quality
        priorities.append(cand.priority)
        short.offer(cand)
        if rows is not None:
            rows.add(path, cand.priority, cand.estimate, cand.entropy, cand.features)
        order += 1
    return Scored(short.ranked(), np.sort(np.array(priorities, np.float64)), unreadable,
                  time.perf_counter() - t0, rows)
