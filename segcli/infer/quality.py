"""`--quality` in predict and evaluate: results worst first, the review folder, and how far the
estimate can be trusted on labelled data (the trust figures `evaluate --quality` reports).

The estimate itself (features, calibration) is segcli.quality's; the error maps come from the
Predictor (segcli.infer.predictor), over a .pt checkpoint or an exported .onnx alike.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from segcli.config import DataInfo
from segcli.data.io import IGNORE, read_image
from segcli.infer.predict import PredictResult
from segcli.metrics import auroc, aurc, image_quality, spearman
from segcli.quality import BASELINES

PIXELS = 2_000_000  # pixels sampled for the per-pixel AUROC, over all images together
SIGNALS = ("estimate", *BASELINES)  # what evaluate --quality compares: the estimate and the baselines


def worst_first(results: Sequence[PredictResult]) -> list[PredictResult]:
    """Unreadable inputs first (nothing to check but the file), then by estimated quality, worst first."""
    return sorted(results, key=lambda r: (r.error is None, r.quality if r.quality is not None else -1.0))


def _overlay_of(res: PredictResult, info: DataInfo) -> Image.Image:
    """The overlay with the suspect regions outlined, from the files predict wrote."""
    from segcli.visualize import overlay

    assert res.output is not None
    labels = np.asarray(Image.open(res.output))
    if info.binary:
        labels = (labels > 0).astype(np.uint8)
    error = np.asarray(Image.open(res.error_map)) if res.error_map is not None else None
    return Image.fromarray(overlay(read_image(res.input), labels, info.binary, colors=info.colors, bands=info.bands,
                                   suspect=error))


def write_review(results: Sequence[PredictResult], n: int, folder: Path, info: DataInfo) -> list[dict[str, Any]]:
    """Copy the n worst masks' image, mask, overlay and error map into `folder` as `RANK_<stem>...`,
    with review.json listing them; returns that list."""
    ranked = [r for r in worst_first(results) if r.error is None and r.output is not None][:n]
    folder.mkdir(parents=True, exist_ok=True)
    digits = len(str(max(1, len(ranked))))
    listed = []
    for rank, res in enumerate(ranked, 1):
        assert res.output is not None
        stem = f"{rank:0{digits}d}_{res.output.stem}"
        files = {"image": folder / f"{stem}{res.input.suffix}", "mask": folder / f"{stem}_mask.png",
                 "overlay": folder / f"{stem}_overlay.png", "error_map": folder / f"{stem}_error.png"}
        shutil.copyfile(res.input, files["image"])
        shutil.copyfile(res.output, files["mask"])
        if res.overlay is not None:
            shutil.copyfile(res.overlay, files["overlay"])
        else:
            _overlay_of(res, info).save(files["overlay"])
        if res.error_map is not None:
            shutil.copyfile(res.error_map, files["error_map"])
        else:
            del files["error_map"]
        listed.append({"rank": rank, "quality": res.quality, "input": str(res.input),
                       **{k: str(v) for k, v in files.items()}})
    (folder / "review.json").write_text(json.dumps(listed, indent=1) + "\n", encoding="utf-8")
    return listed


@dataclass
class TrustCollector:
    """Per image: the estimate, the calibrated baselines and the true quality and pixel accuracy;
    per pixel (sampled): the error map, the entropy map and whether the label is wrong."""

    num_classes: int
    binary: bool
    images: int = 1  # how many images will come (the pixel sample is shared among them)
    rows: list[dict[str, Any]] = field(default_factory=list)
    pixels: dict[str, list[np.ndarray]] = field(default_factory=lambda: {"error": [], "entropy": [], "wrong": []})

    def add(self, name: str, seg: Any, truth: np.ndarray, calibration: Any) -> None:
        """One image's Segmentation (with error map, sums and entropy map) against its truth."""
        quality, acc = image_quality(seg.labels, truth, 2 if self.binary else self.num_classes, self.binary)
        feats = seg.stats.features()
        row = {"image": name, "estimate": seg.quality, "quality": quality, "accuracy": acc}
        for b in BASELINES:
            row[b] = round(calibration.baselines[b](feats), 4) if b in calibration.baselines else feats[b]
        self.rows.append(row)
        self._sample(len(self.rows), seg, truth)

    def _sample(self, seed: int, seg: Any, truth: np.ndarray) -> None:
        per_image = max(1000, PIXELS // max(1, self.images))
        n = truth.size
        idx = np.random.default_rng(seed).integers(0, n, size=min(n, 2 * per_image))
        idx = idx[truth.ravel()[idx] != IGNORE][:per_image]
        self.pixels["error"].append(seg.error.ravel()[idx])
        self.pixels["entropy"].append(seg.entropy.ravel()[idx].astype(np.float32))
        self.pixels["wrong"].append(seg.labels.ravel()[idx] != truth.ravel()[idx])

    def report(self, target: str) -> dict[str, Any]:
        return trust_figures(self.rows, {k: np.concatenate(v) if v else np.zeros(0) for k, v in self.pixels.items()},
                             target)


def trust_figures(rows: list[dict[str, Any]], pixels: dict[str, np.ndarray], target: str) -> dict[str, Any]:
    """Spearman of each signal with the true per-image quality (mIoU, binary: Dice) and pixel accuracy,
    its mean absolute error as an estimate of the quality, the area under the risk-coverage curve
    (risk = 1 - quality; lower is better), and the per-pixel AUROC of the error and entropy maps
    against the wrong pixels. Images without labelled pixels are left out."""
    rows = [r for r in rows if r["quality"] is not None and np.isfinite(r["quality"])]
    quality = np.array([r["quality"] for r in rows], np.float64)
    acc = np.array([r["accuracy"] for r in rows], np.float64)

    def figures(key: str) -> dict[str, Optional[float]]:
        est = np.array([r[key] for r in rows], np.float64)
        if len(rows) < 2:
            return {"spearman_quality": None, "spearman_accuracy": None, "mae": None, "aurc": None}
        return {"spearman_quality": _num(spearman(est, quality)), "spearman_accuracy": _num(spearman(est, acc)),
                "mae": _num(float(np.mean(np.abs(est - quality)))), "aurc": _num(aurc(est, 1.0 - quality))}

    wrong = pixels["wrong"].astype(bool)
    out: dict[str, Any] = {"target": target, "images": len(rows), "mean_quality": _num(float(quality.mean()))
                           if len(rows) else None}
    for key in SIGNALS:
        out[key] = figures(key)
    out["estimate"]["pixel_auroc"] = _num(auroc(pixels["error"], wrong))
    out["neg_entropy"]["pixel_auroc"] = _num(auroc(pixels["entropy"], wrong))
    out["max_softmax"]["pixel_auroc"] = None
    out["oracle_aurc"] = _num(aurc(quality, 1.0 - quality)) if len(rows) else None
    out["pixels"] = int(len(wrong))
    out["per_image"] = rows
    return out


def _num(v: float) -> Optional[float]:
    return round(float(v), 4) if v is not None and np.isfinite(v) else None
