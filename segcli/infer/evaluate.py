"""Evaluate: score a model on a labelled folder at each mask's own resolution.

Masks come from the same code path as `segcli predict` (segcli.infer.pipeline.segment_stream,
same tiling, TTA and threshold), so the scores describe the masks predict writes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from segcli.data.discovery import Sample
from segcli.data.io import IGNORE, check_channels, encode_mask, image_size, read_image, read_mask
from segcli.errors import DataError
from segcli.infer.predictor import Predictor
from segcli.metrics import ConfusionMatrix
from segcli.infer.pipeline import Writer, prefetch, segment_stream


def _load_pair(sample: Sample, binary: bool, ignore: Optional[int], num_classes: int,
               channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode an (image, mask) pair and check both fit the model (runs on a reader thread)."""
    assert sample.mask is not None
    image = check_channels(read_image(sample.image), channels, sample.image)
    truth = encode_mask(read_mask(sample.mask), binary, ignore)
    if truth.shape != image.shape[:2]:
        raise DataError(f"{sample.mask}: mask size {truth.shape[::-1]} differs from its image {image.shape[1::-1]}")
    if not binary:
        bad = (truth != IGNORE) & (truth >= num_classes)
        if bad.any():
            raise DataError(
                f"{sample.mask}: mask value {int(truth[bad].max())} is not one of the model's "
                f"{num_classes} classes; fix the mask or pass --ignore-index"
            )
    return image, truth


def _pixels(sample: Sample) -> int:
    try:
        w, h = image_size(sample.image)
        return 2 * w * h  # image + mask
    except DataError:
        return 0


def run_evaluate(
    predictor: Predictor, samples: list[Sample], ignore_index: Optional[int] = None,
    save_dir: Optional[Path] = None, on_sample: Optional[Callable[[Sample, np.ndarray], None]] = None,
    workers: int = 2,
) -> dict[str, Any]:
    """Confusion-matrix metrics over all pairs; classes named as the model names them.

    With `predictor.quality` (and `baselines`: InferenceOptions(quality=True, baselines=True)), also
    `quality`: how far the label-free estimate can be trusted here, beside the max-softmax and
    entropy baselines (segcli.infer.quality.trust_figures).

    `ignore_index` defaults to the model's. With `save_dir`, the predicted masks go to
    save_dir/masks/<stem>.png (as predict writes them), plus confusion_matrix.png and
    metrics.json. The first unreadable or inconsistent pair stops evaluation (a score over
    a silently smaller set would mislead).
    """
    from segcli.infer.predict import save_mask

    info = predictor.info
    ignore = info.ignore_index if ignore_index is None else ignore_index
    cm = ConfusionMatrix(info.num_classes)
    trust = None
    if predictor.quality:
        from segcli.infer.quality import TrustCollector

        trust = TrustCollector(info.num_classes, info.binary, len(samples))
    writer = Writer(workers) if save_dir is not None else None
    loaded = prefetch(samples, lambda s: _load_pair(s, info.binary, ignore, info.num_classes, info.in_channels),
                      _pixels, workers, max_ahead=2 * predictor.batch_size + 2)
    try:
        for seg in segment_stream(predictor, loaded, lambda pair: pair[0]):
            sample: Sample = seg.item.key
            if seg.item.error is not None:
                raise DataError(seg.item.error)
            cm.update(seg.labels, seg.item.value[1])
            if trust is not None:
                trust.add(sample.image.name, seg.seg, seg.item.value[1], predictor.calibration)
            if writer is not None and save_dir is not None:
                dst = save_dir / "masks" / f"{sample.image.stem}.png"
                writer.submit(lambda lab=seg.labels, dst=dst: save_mask(lab, info.binary, dst, info.colors), dst)
                list(writer.ready())
            if on_sample:
                on_sample(sample, seg.labels)
    finally:
        if writer is not None:
            list(writer.close())
    result = {k: _finite(v) for k, v in cm.compute().items()}
    names = info.class_names()
    for name, row in zip(names, result["per_class"]):
        row["name"] = name
        row["absent"] = row["iou"] is None  # in neither truth nor prediction: no score, not in the means
    result["classes"] = names
    result["ignore_index"] = ignore
    result["images"] = len(samples)
    result["confusion_matrix"] = cm.mat.tolist()
    if trust is not None and predictor.calibration is not None:
        result["quality"] = trust.report(predictor.calibration.target)
    if save_dir is not None:
        save_report(result, save_dir)
    return result


def _finite(v: Any) -> Any:
    """NaN (no pixels at all) as null: JSON has no NaN."""
    return None if isinstance(v, float) and math.isnan(v) else v


def save_report(result: dict[str, Any], save_dir: Path) -> None:
    """metrics.json and confusion_matrix.png in save_dir."""
    from segcli.visualize import plot_confusion

    save_dir.mkdir(parents=True, exist_ok=True)
    (save_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot_confusion(np.asarray(result["confusion_matrix"]), result["classes"], save_dir / "confusion_matrix.png")
