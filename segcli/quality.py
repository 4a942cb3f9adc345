"""Label-free mask quality, the numpy half: per-image features summed from streamed rows, the
calibrator that maps them to an estimated mIoU (binary: foreground Dice), and its fitting.

Training fits the calibrator on validation regions at the end of a run (segcli.train.estimator);
predict, evaluate, the API and the server apply it (segcli.infer), over a torch checkpoint or an
exported ONNX model alike. torch-free: the ONNX path imports this module too.

Per pixel, given the model's probabilities p (binary: the foreground probability), its labels and
the estimator's error probability e (the chance that the label is wrong):
- margin: top-1 minus top-2 probability (binary: |2p - 1|); max-softmax and normalised entropy;
- expected counts (class c): TP_c = sum over label c of (1 - e), FP_c = sum over label c of e,
  FN_c = sum over label != c of e * p_c / (1 - p_label) (an error's true class spread over the other
  classes in the model's proportions; binary: FN = sum over background of e).
Per image: `margin` (mean margin), `accuracy` (1 - mean e), `expected` (the expected mIoU over the
predicted classes and those whose expected misses exceed 0.2% of the image; binary: the expected
foreground Dice), `max_softmax` and `neg_entropy` (the baselines).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

# A class counts in the expected mIoU when predicted, or when its expected misses exceed this share.
MISSED_SHARE = 0.002
FEATURES = ("margin", "accuracy", "expected")  # what the shipped calibrator reads
BASELINES = ("max_softmax", "neg_entropy")  # label-free baselines, calibrated the same way


def class_probs(probs: np.ndarray, binary: bool) -> np.ndarray:
    """(C', ...) model probabilities to (K, ...) per-class ones ([1 - p, p] for a binary model)."""
    if binary:
        p = probs[0].astype(np.float32, copy=False)
        return np.stack([1.0 - p, p])
    return probs.astype(np.float32, copy=False)


def pixel_maps(probs: np.ndarray, binary: bool, entropy: bool = False) -> dict[str, np.ndarray]:
    """Per-pixel margin and max-softmax (and normalised entropy) of (C', H, W) probabilities."""
    if binary:
        p = probs[0].astype(np.float32, copy=False)
        top1 = np.maximum(p, 1.0 - p)
        out = {"margin": 2.0 * top1 - 1.0, "max_softmax": top1}
        if entropy:
            q = np.clip(p, 1e-7, 1 - 1e-7)
            out["entropy"] = -(q * np.log(q) + (1 - q) * np.log(1 - q)) / math.log(2)
        return out
    p = probs.astype(np.float32, copy=False)
    k = p.shape[0]
    top2 = np.partition(p, k - 2, axis=0)[k - 2:]
    out = {"margin": top2[1] - top2[0], "max_softmax": top2[1]}
    if entropy:
        out["entropy"] = -(p * np.log(np.clip(p, 1e-7, None))).sum(0) / math.log(k)
    return out


@dataclass
class QualityStats:
    """Sums over the pixels of one image (or region), added row band by row band, so a tiled
    image's features need no full-resolution buffers. `k`: the number of classes (2 for binary)."""

    k: int
    binary: bool
    n: float = 0.0
    sums: dict[str, float] = field(default_factory=dict)
    tp: Optional[np.ndarray] = None
    fp: Optional[np.ndarray] = None
    fn: Optional[np.ndarray] = None
    count: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        for name in ("tp", "fp", "fn", "count"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(self.k, np.float64))

    def add(self, probs: np.ndarray, labels: np.ndarray, error: Optional[np.ndarray] = None,
            entropy: bool = False) -> None:
        """Add (C', h, w) probabilities, (h, w) labels and (h, w) error probabilities (if any)."""
        maps = pixel_maps(probs, self.binary, entropy)
        self.n += labels.size
        for name, m in maps.items():
            self._sum(name, m)
        lab = labels.ravel().astype(np.int64)
        self.count += np.bincount(lab, minlength=self.k)[: self.k]
        if error is None:
            return
        e = error.ravel().astype(np.float64)
        self._sum("error", e)
        self.tp += np.bincount(lab, weights=1.0 - e, minlength=self.k)[: self.k]
        self.fp += np.bincount(lab, weights=e, minlength=self.k)[: self.k]
        if self.binary:
            self.fn[1] += float(e[lab == 0].sum())
            self.fn[0] += float(e[lab == 1].sum())
            return
        p = probs.reshape(self.k, -1)
        p_label = np.take_along_axis(p, lab[None], 0)[0].astype(np.float64)
        w = e / np.maximum(1.0 - p_label, 1e-6)
        self.fn += p.astype(np.float64) @ w - np.bincount(lab, weights=w * p_label, minlength=self.k)[: self.k]

    def _sum(self, name: str, values: np.ndarray) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + float(values.sum(dtype=np.float64))

    def merge(self, other: "QualityStats") -> None:
        self.n += other.n
        for name, v in other.sums.items():
            self.sums[name] = self.sums.get(name, 0.0) + v
        for name in ("tp", "fp", "fn", "count"):
            getattr(self, name)[:] += getattr(other, name)

    def features(self) -> dict[str, float]:
        """Per-image features (see the module's docstring); `accuracy`/`expected` need error maps."""
        n = max(self.n, 1.0)
        out = {"margin": self.sums.get("margin", 0.0) / n, "max_softmax": self.sums.get("max_softmax", 0.0) / n}
        if "entropy" in self.sums:
            out["neg_entropy"] = -self.sums["entropy"] / n
        if "error" in self.sums:
            out["accuracy"] = 1.0 - self.sums["error"] / n
            out["expected"] = self.expected()
        return out

    def expected(self) -> float:
        """The expected mIoU (binary: foreground Dice) of the labels given the error probabilities."""
        tp, fp, fn = self.tp, self.fp, self.fn
        if self.binary:
            den = 2 * tp[1] + fp[1] + fn[1]
            return float(2 * tp[1] / den) if den > 1e-9 else 1.0
        present = (self.count > 0) | (fn > MISSED_SHARE * self.n)
        if not present.any():
            return 1.0
        iou = tp[present] / np.maximum(tp + fp + fn, 1e-9)[present]
        return float(iou.mean())


def region_stats(probs: np.ndarray, labels: np.ndarray, error: Optional[np.ndarray], k: int, binary: bool,
                 entropy: bool = False) -> QualityStats:
    s = QualityStats(k, binary)
    s.add(probs, labels, error, entropy)
    return s


@dataclass(frozen=True)
class Calibrator:
    """A linear map of standardised features to a quality in [0, 1] (ridge regression)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float

    def __call__(self, feats: dict[str, float]) -> float:
        z = sum(w * (feats[f] - m) / s for f, m, s, w in zip(self.features, self.mean, self.scale, self.weights))
        return float(min(1.0, max(0.0, self.bias + z)))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Calibrator":
        return cls(tuple(d["features"]), tuple(map(float, d["mean"])), tuple(map(float, d["scale"])),
                   tuple(map(float, d["weights"])), float(d["bias"]))


def fit_ridge(rows: Sequence[dict[str, float]], target: Sequence[float], features: Sequence[str],
              lam: float = 0.05) -> Calibrator:
    """Ridge regression (penalty lam * n on standardised features, the bias free) of target on features."""
    x = np.array([[r[f] for f in features] for r in rows], np.float64)
    y = np.asarray(target, np.float64)
    mu, sd = x.mean(0), x.std(0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    z = np.c_[(x - mu) / sd, np.ones(len(x))]
    reg = lam * len(x) * np.eye(z.shape[1])
    reg[-1, -1] = 0.0
    w = np.linalg.solve(z.T @ z + reg, z.T @ y)
    return Calibrator(tuple(features), tuple(mu.tolist()), tuple(sd.tolist()), tuple(w[:-1].tolist()), float(w[-1]))


@dataclass(frozen=True)
class Calibration:
    """What a checkpoint stores beside the estimator's weights: the calibrator of the estimate, one
    per baseline (fitted on the same regions, so `evaluate --quality` compares like with like), and
    where and how well they were fitted."""

    target: str  # "mIoU" or "Dice" (binary models: the foreground's)
    estimate: Calibrator
    baselines: dict[str, Calibrator] = field(default_factory=dict)
    fitted_on: dict[str, Any] = field(default_factory=dict)  # images, regions, in-sample Spearman, epoch

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "estimate": self.estimate.to_dict(),
                "baselines": {k: v.to_dict() for k, v in self.baselines.items()}, "fitted_on": dict(self.fitted_on)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Calibration":
        return cls(str(d["target"]), Calibrator.from_dict(d["estimate"]),
                   {k: Calibrator.from_dict(v) for k, v in (d.get("baselines") or {}).items()},
                   dict(d.get("fitted_on") or {}))


def uncalibrated(binary: bool) -> Calibration:
    """For a checkpoint whose run never reached its end (no calibration yet): the expected mIoU
    (binary: Dice) itself, and max-softmax for the baselines."""
    ident = Calibrator(("expected",), (0.0,), (1.0,), (1.0,), 0.0)
    base = {b: Calibrator((b,), (0.0,), (1.0,), (1.0,), 1.0 if b == "neg_entropy" else 0.0) for b in BASELINES}
    return Calibration("Dice" if binary else "mIoU", ident, base, {"calibrated": False})


def fit_calibration(rows: Sequence[dict[str, float]], quality: Sequence[float], binary: bool,
                    info: Optional[dict[str, Any]] = None) -> Calibration:
    """The estimate's calibrator on FEATURES and one per baseline, all fitted on the same regions."""
    from segcli.metrics import spearman

    est = fit_ridge(rows, quality, FEATURES)
    base = {b: fit_ridge(rows, quality, (b,)) for b in BASELINES}
    rho = spearman(np.array([est(r) for r in rows]), np.asarray(quality))
    fitted = {"calibrated": True, "regions": len(rows), **(info or {}),
              "spearman": round(rho, 4) if math.isfinite(rho) else None}  # constant estimates: no ranking
    return Calibration("Dice" if binary else "mIoU", est, base, fitted)


def no_estimator(where: str) -> str:
    """The one-line answer to --quality for a model without an estimator."""
    return (f"{where}: this model holds no quality estimator (trained by an earlier segcli, or with --no-quality); "
            "retrain it with this segcli to use --quality")


def error_image(error: np.ndarray) -> np.ndarray:
    """An error-probability map as 8-bit grey: 255 = most likely wrong."""
    return np.clip(np.rint(np.asarray(error, np.float32) * 255.0), 0, 255).astype(np.uint8)
