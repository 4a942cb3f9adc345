"""Segmentation metrics from an accumulated confusion matrix (update / compute), each image's own
score, and how far a quality estimate can be trusted (rank correlation, risk-coverage, AUROC)."""

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


def image_quality(pred: np.ndarray, target: np.ndarray, num_classes: int, binary: bool) -> tuple[float, float]:
    """(quality, pixel accuracy) of one predicted mask: its mIoU over the classes present in truth or
    prediction; for a binary model the Dice of the foreground (1.0 when neither holds any)."""
    cm = ConfusionMatrix(num_classes)
    cm.update(pred, target)
    m = cm.mat.astype(np.float64)
    total = m.sum()
    acc = float(np.trace(m) / total) if total else float("nan")
    if binary:
        tp, fg = m[1, 1], m[1].sum() + m[:, 1].sum()
        return (float(2 * tp / fg) if fg else 1.0), acc
    return float(cm.compute()["mIoU"]), acc


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their mean rank."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x), np.float64)
    r[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=r)
    return sums[inverse] / counts[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (Pearson's on tie-averaged ranks); NaN if either is constant."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def aurc(confidence: np.ndarray, risk: np.ndarray) -> float:
    """Area under the risk-coverage curve: keep the most confident k of n images (k = 1..n) and
    average their risk; the mean over k. Lower is better; a perfect ranking gives the minimum."""
    order = np.argsort(-np.asarray(confidence, np.float64), kind="mergesort")
    r = np.asarray(risk, np.float64)[order]
    return float(np.mean(np.cumsum(r) / np.arange(1, len(r) + 1)))


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of `scores` separating `positives` (Mann-Whitney U, ties counted
    half); NaN without both classes."""
    scores, positives = np.asarray(scores, np.float64).ravel(), np.asarray(positives, bool).ravel()
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if not n_pos or not n_neg:
        return float("nan")
    r = ranks(scores)
    return float((r[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
