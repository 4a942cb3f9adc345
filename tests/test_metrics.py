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
