"""Segmentation metrics from an accumulated confusion matrix (update / compute)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from segcli.data.io import IGNORE


class ConfusionMatrix:
    """Rows = truth, columns = prediction, over K classes; IGNORE pixels are skipped."""

    def __init__(self, num_classes: int) -> None:
        self.k = num_classes
        self.mat = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add a batch (any shape, same for both) of predicted and true labels."""
        pred, target = np.asarray(pred).reshape(-1), np.asarray(target).reshape(-1)
        valid = target != IGNORE
        idx = target[valid].astype(np.int64) * self.k + pred[valid].astype(np.int64)
        self.mat += np.bincount(idx, minlength=self.k * self.k).reshape(self.k, self.k)

    def merge(self, other: "ConfusionMatrix") -> None:
        self.mat += other.mat

    def compute(self) -> dict[str, Any]:
        """Per-class IoU, Dice, precision, recall; pixel accuracy; means over present classes.

        A class absent from both truth and prediction has no defined score: it is reported
        as None and left out of the means.
        """
        m = self.mat.astype(np.float64)
        tp = np.diag(m)
        truth = m.sum(1)
        pred = m.sum(0)
        union = truth + pred - tp
        per_class = []
        for c in range(self.k):
            present = bool(truth[c] > 0 or pred[c] > 0)

            def ratio(num: float, den: float) -> float | None:
                if not present:
                    return None
                return float(num / den) if den > 0 else 0.0

            per_class.append({
                "iou": ratio(tp[c], union[c]),
                "dice": ratio(2 * tp[c], truth[c] + pred[c]),
                "precision": ratio(tp[c], pred[c]),
                "recall": ratio(tp[c], truth[c]),
                "pixels": int(truth[c]),
            })

        def mean(key: str) -> float:
            vals = [c[key] for c in per_class if c[key] is not None]
            return float(sum(vals) / len(vals)) if vals else math.nan

        total = m.sum()
        return {
            "mIoU": mean("iou"),
            "mDice": mean("dice"),
            "pixel_accuracy": float(tp.sum() / total) if total > 0 else math.nan,
            "per_class": per_class,
        }
