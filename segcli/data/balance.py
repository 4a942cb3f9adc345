"""Settings derived from the data: class weights against imbalance, the default training size.

torch-free, so `segcli check` suggests exactly what `segcli train` would use.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from segcli.errors import UserError


def auto_class_weights(counts: Sequence[int]) -> list[float]:
    """Smoothed inverse-frequency weights: w_c proportional to 1/sqrt(pixel share of c).

    The square root keeps a 0.1%-class from getting 500x the weight of a 50%-class (it gets
    about 22x), which plain inverse frequency would; weights are scaled to average 1.
    Classes absent from the training masks get the largest present weight (they never
    appear as targets, so it only matters for consistency).
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.sum() <= 0:
        return [1.0] * len(c)
    freq = c / c.sum()
    present = freq > 0
    w = np.ones_like(freq)
    w[present] = 1.0 / np.sqrt(freq[present])
    if (~present).any():
        w[~present] = w[present].max()
    w = w / w.mean()
    return [round(float(v), 4) for v in w]


def resolve_class_weights(spec: Any, counts: Sequence[int], num_classes: int) -> Optional[list[float]]:
    """--class-weights: None/'none' (off), 'auto', or explicit numbers (list or 'w0,w1,...')."""
    if spec is None:
        return None
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in ("", "none", "off"):
            return None
        if text == "auto":
            return auto_class_weights(counts)
        parts = [p for p in text.replace(" ", ",").split(",") if p]
    elif isinstance(spec, (list, tuple)):
        parts = list(spec)
    else:
        raise UserError(f"--class-weights {spec!r}: expected auto, none, or one number per class")
    try:
        weights = [float(p) for p in parts]
    except (TypeError, ValueError):
        raise UserError(f"--class-weights {spec!r}: expected auto, none, or numbers like 1,2.5,0.5") from None
    if len(weights) != num_classes:
        raise UserError(f"--class-weights: got {len(weights)} weights for {num_classes} classes; give one per class")
    if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise UserError("--class-weights: weights must be non-negative numbers, not all zero")
    return weights


def suggest_img_size(sizes: Sequence[tuple[int, int]]) -> int:
    """Training patch from the data: the median short side, multiple of 32, in [32, 256]."""
    if not sizes:
        return 256
    short = int(np.median([min(s) for s in sizes]))
    return int(max(32, min(256, short // 32 * 32)))
