"""Evaluate: score a model on a labelled folder at each mask's own resolution."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from segcli.data.discovery import Sample
from segcli.data.io import encode_mask, read_image, read_mask
from segcli.errors import DataError
from segcli.inference import Predictor
from segcli.metrics import ConfusionMatrix


def run_evaluate(
    predictor: Predictor, samples: list[Sample], ignore_index: Optional[int] = None,
    on_sample: Optional[Callable[[Sample, np.ndarray], None]] = None,
) -> dict[str, Any]:
    """Confusion-matrix metrics over all pairs; classes named as the model names them."""
    info = predictor.info
    ignore = info.ignore_index if ignore_index is None else ignore_index
    cm = ConfusionMatrix(info.num_classes)
    for s in samples:
        image = read_image(s.image)
        truth = encode_mask(read_mask(s.mask), info.binary, ignore)
        if truth.shape != image.shape[:2]:
            raise DataError(f"{s.mask}: mask size {truth.shape[::-1]} differs from its image {image.shape[1::-1]}")
        if not info.binary:
            bad = (truth != 255) & (truth >= info.num_classes)
            if bad.any():
                raise DataError(
                    f"{s.mask}: mask value {int(truth[bad].max())} is not one of the model's "
                    f"{info.num_classes} classes; fix the mask or pass --ignore-index"
                )
        labels, _ = predictor.predict(image)
        cm.update(labels, truth)
        if on_sample:
            on_sample(s, labels)
    result = cm.compute()
    names = info.class_names()
    for name, row in zip(names, result["per_class"]):
        row["name"] = name
    result["images"] = len(samples)
    result["confusion_matrix"] = cm.mat.tolist()
    return result
