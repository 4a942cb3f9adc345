"""The numpy side of the quality estimate: per-image features from streamed rows, the expected mIoU /
Dice, the calibrator, and the Predictor's error channel through tiles and TTA."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from segcli.config import DataInfo
from segcli.infer.predictor import Predictor
from segcli.metrics import image_quality
from segcli.models.output import OutputSpec
from segcli.quality import (Calibration, Calibrator, QualityStats, fit_calibration, fit_ridge, pixel_maps,
                            region_stats, uncalibrated)


def _probs(k: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    z = np.random.default_rng(seed).normal(0, 2, (k, h, w))
    e = np.exp(z - z.max(0))
    return (e / e.sum(0)).astype(np.float32)


def test_pixel_maps_multiclass_and_binary() -> None:
    p = np.array([[[0.7]], [[0.2]], [[0.1]]], np.float32)
    m = pixel_maps(p, binary=False, entropy=True)
    assert m["margin"][0, 0] == pytest.approx(0.5) and m["max_softmax"][0, 0] == pytest.approx(0.7)
    ent = -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)) / np.log(3)
    assert m["entropy"][0, 0] == pytest.approx(ent, rel=1e-5)
    b = pixel_maps(np.array([[[0.2]]], np.float32), binary=True, entropy=True)
    assert b["margin"][0, 0] == pytest.approx(0.6) and b["max_softmax"][0, 0] == pytest.approx(0.8)
    assert b["entropy"][0, 0] == pytest.approx(-(0.2 * np.log(0.2) + 0.8 * np.log(0.8)) / np.log(2), rel=1e-5)


def _expected_miou_direct(p: np.ndarray, labels: np.ndarray, e: np.ndarray) -> float:
    """The definition, pixel by pixel."""
    k = p.shape[0]
    tp, fp, fn = np.zeros(k), np.zeros(k), np.zeros(k)
    for (y, x), c in np.ndenumerate(labels):
        tp[c] += 1 - e[y, x]
        fp[c] += e[y, x]
        for j in range(k):
            if j != c:
                fn[j] += e[y, x] * p[j, y, x] / (1 - p[c, y, x])
    present = np.bincount(labels.ravel(), minlength=k)[:k] > 0
    present |= fn > 0.002 * labels.size
    return float(np.mean(tp[present] / (tp + fp + fn)[present]))


def test_expected_miou_matches_its_definition_and_streams_by_rows() -> None:
    p = _probs(4, 12, 10)
    labels = p.argmax(0).astype(np.uint8)
    e = np.random.default_rng(1).random((12, 10)).astype(np.float32) * 0.5
    whole = region_stats(p, labels, e, 4, binary=False)
    assert whole.expected() == pytest.approx(_expected_miou_direct(p, labels, e), rel=1e-6)
    rows = QualityStats(4, False)
    for y0, y1 in ((0, 5), (5, 6), (6, 12)):  # as a tiled image's bands arrive
        rows.add(p[:, y0:y1], labels[y0:y1], e[y0:y1])
    for name, value in whole.features().items():
        assert rows.features()[name] == pytest.approx(value, rel=1e-9)
    assert whole.features()["accuracy"] == pytest.approx(1 - e.mean(), rel=1e-6)
    assert whole.features()["margin"] == pytest.approx(pixel_maps(p, False)["margin"].mean(), rel=1e-6)


def test_expected_dice_for_binary_models() -> None:
    p = np.random.default_rng(0).random((1, 9, 7)).astype(np.float32)
    labels = (p[0] > 0.5).astype(np.uint8)
    e = np.random.default_rng(2).random((9, 7)) * 0.4
    fg = labels == 1
    tp, fp, fn = (1 - e)[fg].sum(), e[fg].sum(), e[~fg].sum()
    assert region_stats(p, labels, e, 2, True).expected() == pytest.approx(2 * tp / (2 * tp + fp + fn))
    # sure of every pixel: the expected Dice of a right mask is 1, like the true one
    assert region_stats(p, labels, np.zeros_like(e), 2, True).expected() == pytest.approx(1.0)
    assert region_stats(p, np.zeros_like(labels), np.zeros_like(e), 2, True).expected() == 1.0  # nothing, no doubt


def test_ridge_calibrator_recovers_a_linear_target_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    rows = [{"margin": float(a), "accuracy": float(b), "expected": float(c)} for a, b, c in rng.random((200, 3))]
    y = [0.2 + 0.3 * r["margin"] + 0.4 * r["expected"] for r in rows]
    cal = fit_ridge(rows, y, ("margin", "accuracy", "expected"), lam=1e-6)
    assert max(abs(cal(r) - t) for r, t in zip(rows, y)) < 1e-4
    assert Calibrator.from_dict(cal.to_dict()) == cal
    assert cal({"margin": 100.0, "accuracy": 0.0, "expected": 100.0}) == 1.0  # clipped to [0, 1]


def test_calibration_fits_estimate_and_baselines_on_the_same_regions() -> None:
    rng = np.random.default_rng(0)
    rows = [{"margin": m, "accuracy": m, "expected": m, "max_softmax": m, "neg_entropy": -1 + m}
            for m in rng.random(50).tolist()]
    q = [0.5 * r["margin"] + 0.25 for r in rows]
    cal = fit_calibration(rows, q, binary=False, info={"images": 5})
    assert cal.target == "mIoU" and set(cal.baselines) == {"max_softmax", "neg_entropy"}
    assert cal.fitted_on["regions"] == 50 and cal.fitted_on["spearman"] == pytest.approx(1.0)
    assert Calibration.from_dict(cal.to_dict()) == cal
    un = uncalibrated(binary=True)
    assert un.target == "Dice" and un.estimate({"expected": 0.8}) == pytest.approx(0.8)
    assert un.baselines["neg_entropy"]({"neg_entropy": -0.3}) == pytest.approx(0.7)


def _local(x: np.ndarray) -> np.ndarray:
    """A model with a 3x3 receptive field (binary)."""
    pad = np.pad(x[:, 0], ((0, 0), (1, 1), (1, 1)), mode="edge")
    mean = sum(pad[:, i : i + x.shape[2], j : j + x.shape[3]] for i in range(3) for j in range(3)) / 9
    return (1 / (1 + np.exp(-8 * (mean - 0.5))))[:, None].astype(np.float32)


def _estimator(x: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """A per-pixel 'estimator': uncertain where the probability is near 0.5."""
    return (1 - np.abs(2 * probs - 1)) * 0.8


def _quality_predictor(**kw) -> Predictor:
    info = DataInfo(num_classes=2, binary=True, in_channels=1, mean=[0.0], std=[1.0])
    return Predictor(_local, info, OutputSpec(True, 2, 4), estimator=_estimator, calibration=uncalibrated(True),
                     quality=True, **kw)


def test_error_channel_is_tiled_and_summed_like_the_probabilities() -> None:
    image = (np.random.default_rng(0).random((152, 132, 1)) * 255).astype(np.uint8)
    whole = _quality_predictor(tile=0).predict(image)
    tiled = _quality_predictor(tile=48, overlap=0.5, batch_size=3).predict(image)
    direct = _estimator(None, _local(image.transpose(2, 0, 1)[None] / 255.0))[0, 0]
    assert np.abs(whole.error.astype(float) - np.rint(direct * 255)).max() <= 1
    assert np.abs(whole.error.astype(int) - tiled.error.astype(int)).max() <= 12
    assert whole.quality == pytest.approx(whole.stats.expected(), abs=1e-4)
    assert tiled.quality == pytest.approx(whole.quality, abs=0.01)
    assert tiled.stats.n == whole.stats.n == image.shape[0] * image.shape[1]


def test_tta_averages_the_error_map_and_quality_is_off_by_default() -> None:
    image = (np.random.default_rng(1).random((40, 36, 1)) * 255).astype(np.uint8)
    seg = _quality_predictor(tile=0, tta=True).predict(image)
    assert seg.error is not None and seg.error.shape == (40, 36)
    seg = dataclasses.replace(_quality_predictor(tile=0), quality=False).predict(image)
    assert seg.error is None and seg.quality is None and seg.stats is None


def test_true_image_quality_is_mean_iou_or_foreground_dice() -> None:
    pred = np.array([[0, 1], [1, 1]])
    truth = np.array([[0, 1], [0, 1]])
    q, acc = image_quality(pred, truth, 2, binary=True)
    assert q == pytest.approx(2 * 2 / (3 + 2)) and acc == pytest.approx(0.75)
    q, _ = image_quality(pred, truth, 2, binary=False)
    assert q == pytest.approx((1 / 2 + 2 / 3) / 2)
