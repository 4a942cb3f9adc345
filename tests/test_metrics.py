"""Confusion-matrix metrics."""

from __future__ import annotations

import numpy as np
import pytest

from segcli.data import IGNORE
from segcli.metrics import ConfusionMatrix


def test_confusion_matrix_metrics_and_absent_classes() -> None:
    cm = ConfusionMatrix(4)
    truth = np.array([0, 0, 1, 1, IGNORE])
    pred = np.array([0, 1, 1, 1, 3])
    cm.update(pred, truth)
    r = cm.compute()
    iou = [c["iou"] for c in r["per_class"]]
    assert iou[0] == pytest.approx(0.5) and iou[1] == pytest.approx(2 / 3)
    assert iou[2] is None and iou[3] is None  # absent from both: not 0, not 1
    assert r["mIoU"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert r["pixel_accuracy"] == pytest.approx(0.75)


def test_ranking_metrics_against_direct_definitions() -> None:
    from itertools import product

    from segcli.metrics import aurc, auroc, spearman

    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 40).astype(float)  # ties on purpose
    b = a + rng.normal(0, 2, 40)
    # Spearman = Pearson on mid-ranks
    def mid(x):
        return np.array([np.sum(x < v) + (np.sum(x == v) + 1) / 2 for v in x])
    assert spearman(a, b) == pytest.approx(np.corrcoef(mid(a), mid(b))[0, 1])
    assert spearman(a, a) == pytest.approx(1.0) and spearman(a, -a) == pytest.approx(-1.0)
    # AUROC = P(score of a positive > score of a negative), ties half
    pos = b > np.median(b)
    pairs = [(p, q) for p, q in product(a[pos], a[~pos])]
    direct = np.mean([1.0 if p > q else 0.5 if p == q else 0.0 for p, q in pairs])
    assert auroc(a, pos) == pytest.approx(direct)
    # AURC: mean risk of the k most confident, averaged over k
    conf, risk = np.array([0.9, 0.1, 0.5]), np.array([0.0, 1.0, 0.5])
    assert aurc(conf, risk) == pytest.approx(np.mean([0.0, 0.25, 0.5]))
    assert aurc(conf, risk) < aurc(-conf, risk)


def test_image_quality() -> None:
    from segcli.metrics import image_quality

    truth = np.array([[0, 1], [1, IGNORE]])
    assert image_quality(np.array([[0, 1], [0, 1]]), truth, 2, binary=True) == pytest.approx((2 / 3, 2 / 3))
    assert image_quality(np.zeros((2, 2), int), np.zeros((2, 2), int), 2, binary=True)[0] == 1.0  # nothing to find
    q, acc = image_quality(np.array([[0, 1], [2, 2]]), np.array([[0, 1], [1, 2]]), 3, binary=False)
    assert q == pytest.approx((1 + 0.5 + 0.5) / 3) and acc == 0.75
