"""The parts of `segcli select` below the command: the diversity step, the fingerprint, the
shortlist and the COCO polygons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segcli.infer.select.coco import CocoWriter, region_polygons
from segcli.infer.select.pick import choose, rank_weights
from segcli.infer.select.pool import GRID, Candidate, Shortlist, fingerprint
from segcli.infer.select.spread import PROJECTED, PoolTable, spread


def _cands(priorities: list[float], features: np.ndarray) -> list[Candidate]:
    cands = [Candidate(Path(f"{i}.png"), i, p, features=f) for i, (p, f) in enumerate(zip(priorities, features))]
    return sorted(cands, key=lambda c: (c.priority, c.order))


def test_equal_estimates_are_spread_over_the_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 5
    feats = np.repeat(centres, 6, axis=0) + rng.normal(scale=0.01, size=(24, 8))  # 4 "videos" of 6 frames
    picks = choose(_cands([0.5] * 24, feats), 4, diversity=True)
    clusters = {int(p.cand.path.stem) // 6 for p in picks}
    assert clusters == {0, 1, 2, 3}
    assert [p.distance is None for p in picks] == [True, False, False, False]
    plain = choose(_cands([0.5] * 24, feats), 4, diversity=False)
    assert {int(p.cand.path.stem) // 6 for p in plain} == {0}  # without diversity: one video's frames


def test_a_worse_image_wins_over_an_equally_distant_better_one() -> None:
    feats = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    picks = choose(_cands([0.1, 0.3, 0.2, 0.4], feats), 2, diversity=True)
    assert [p.cand.order for p in picks] == [0, 2]  # 1, 2 and 3 are all at distance 1: the worst of them


@pytest.mark.parametrize("seed", range(5))
def test_never_the_same_image_twice(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    feats = rng.normal(size=(n, 5))
    feats[: n // 2] = feats[0]  # half of them identical copies
    priorities = rng.integers(0, 3, n).astype(float).tolist()
    for count in (1, n // 2, n, n + 3):
        picks = choose(_cands(priorities, feats), count, diversity=True)
        orders = [p.cand.order for p in picks]
        assert len(orders) == len(set(orders)) == min(count, n)


def _table(sizes: list[int], seed: int = 0) -> tuple[PoolTable, np.ndarray, np.ndarray]:
    """A pool of len(sizes) kinds of image (tight clusters of those sizes), random signals."""
    rng = np.random.default_rng(seed)
    kind = np.repeat(np.arange(len(sizes)), sizes)
    centres = rng.random((len(sizes), 48)) * 3
    feats = centres[kind] + rng.normal(scale=0.01, size=(len(kind), 48))
    priority = rng.random(len(kind))
    table = PoolTable(48)
    for i, (f, q) in enumerate(zip(feats, priority)):
        table.add(Path(f"{i}.png"), float(q), float(q), None, f)
    return table, kind, priority


def test_spread_gives_each_kind_of_image_its_share_of_the_pool() -> None:
    table, kind, _ = _table([60, 30, 10])
    picks = spread(table, 10, seed=0)
    assert np.bincount(kind[[g.row for g in picks]], minlength=3).tolist() == [6, 3, 1]
    assert table.features().shape == (100, PROJECTED) and table.blocks[0].dtype == np.float16  # bounded per image


def test_spread_takes_the_most_promising_of_each_part_most_promising_first() -> None:
    table, kind, priority = _table([20, 20, 20], seed=1)
    picks = spread(table, 3, seed=0)
    rows = [g.row for g in picks]
    assert sorted(rows) == sorted(int(np.flatnonzero(kind == k)[np.argmin(priority[kind == k])]) for k in range(3))
    assert [priority[r] for r in rows] == sorted(priority[r] for r in rows)
    assert picks[0].distance is None and all(g.distance > 1 for g in picks[1:]) and {g.size for g in picks} == {20}


@pytest.mark.parametrize("seed", range(4))
def test_spread_never_picks_an_image_twice(seed: int) -> None:
    rng = np.random.default_rng(seed)
    table, _, _ = _table(rng.integers(1, 15, 4).tolist(), seed)
    n = len(table.paths)
    table.blocks[0][: n // 2] = table.blocks[0][0]  # half of them copies of one image
    for count in (1, n // 3, n - 1, n, n + 5):
        rows = [g.row for g in spread(table, count, seed)]
        assert len(rows) == len(set(rows)) == min(count, n)


def test_rank_weights_share_ties() -> None:
    assert rank_weights(np.array([0.1, 0.1, 0.5, 0.9])).tolist() == [1.0, 1.0, 0.5, 0.25]


def test_shortlist_keeps_the_lowest_priorities_in_bounded_memory() -> None:
    short = Shortlist(3)
    rng = np.random.default_rng(0)
    values = rng.random(1000)
    for i, v in enumerate(values):
        short.offer(Candidate(Path(f"{i}"), i, float(v)))
        assert len(short.heap) <= 3
    assert [c.priority for c in short.ranked()] == sorted(values)[:3]
    ties = Shortlist(2)
    for i in range(5):
        ties.offer(Candidate(Path(f"{i}"), i, 0.5))
    assert [c.order for c in ties.ranked()] == [0, 1]  # equal signals: the earlier images stay


def test_fingerprint_describes_the_layout() -> None:
    left = np.zeros((30, 40), np.uint8)
    left[:, :20] = 1
    right = left[:, ::-1].copy()
    fl, fr = fingerprint(left, None, 3), fingerprint(right, None, 3)
    assert fl.shape == (GRID * GRID * 4,) and fl.dtype == np.float32
    assert np.linalg.norm(fl - fr) > 1.0 and np.linalg.norm(fl - fingerprint(left.copy(), None, 3)) == 0
    err = np.full((30, 40), 255, np.uint8)
    assert fingerprint(left, err, 3)[-GRID * GRID:].max() == pytest.approx(1 / GRID)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under NumPy 2
def test_polygons_give_back_the_mask_exactly() -> None:
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(3)
    for t in range(60):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        m = rng.random((h, w)) < rng.random()  # noise: nested regions, holes, single pixels
        polys = region_polygons(m)
        got = (mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([[float(v) for v in p] for p in polys], h, w)))
               if polys else np.zeros((h, w), np.uint8))
        assert np.array_equal(got.astype(bool), m), t


def test_coco_writer_annotates_every_class_but_background() -> None:
    labels = np.zeros((10, 12), np.uint8)
    labels[1:4, 1:4] = 1
    labels[6:9, 2:10] = 2
    labels[7, 4] = 0  # a hole
    doc = CocoWriter(["sky", "car", "road"])
    doc.add("a.png", labels)
    assert [c["id"] for c in doc.doc["categories"]] == [1, 2]
    anns = doc.doc["annotations"]
    assert sorted(a["category_id"] for a in anns) == [1, 2]
    assert {a["category_id"]: a["area"] for a in anns} == {1: 9, 2: 23}
    assert next(a["bbox"] for a in anns if a["category_id"] == 1) == [1, 1, 3, 3]
