"""Calibrating the quality estimator when the run ends.

The estimator (the flaw discriminator of `--gan flaw`, or the judge trained beside another D;
segcli.train.adversary) learns during training where the generator's labels disagree with the truth.
- `calibrate`: at the end of the run, the best generator and the trained estimator on validation
  regions (whole images and random crops of 25-100% of each side), where the true quality is
  known; a ridge regression maps the regions' features (mean margin, 1 - mean error, expected mIoU)
  to their mIoU (binary: foreground Dice), and the baselines get the same treatment
  (segcli.quality.fit_calibration).
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from segcli.checkpoint import Checkpoint
from segcli.data.io import IGNORE
from segcli.metrics import image_quality
from segcli.models import OutputSpec
from segcli.quality import Calibration, fit_calibration, region_stats

WEIGHT_DECAY = 1e-4
MAX_IMAGES = 200  # validation images calibration looks at (evenly spread)
REGIONS = 600  # calibration regions wanted in all: whole images plus random crops
MIN_SIDE = 32
Autocast = Callable[[], AbstractContextManager]


def windows(h: int, w: int, n: int, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """The whole image and n random crops (y0, y1, x0, x1) of 25-100% of each side."""
    out = [(0, h, 0, w)]
    for _ in range(n):
        f = rng.uniform(0.25, 1.0)
        ch, cw = min(h, max(MIN_SIDE, int(h * f))), min(w, max(MIN_SIDE, int(w * f)))
        y, x = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
        out.append((y, y + ch, x, x + cw))
    return out


@torch.inference_mode()
def predict_maps(gen: torch.nn.Module, est: torch.nn.Module, x: torch.Tensor,
                 autocast: Autocast) -> tuple[np.ndarray, np.ndarray]:
    """(C', H, W) probabilities and (H, W) error probabilities of one normalised image (1, C, H, W)."""
    with autocast():
        probs = gen.output.probabilities(gen(x).float())
        err = torch.sigmoid(est(x, probs).float())
    return probs[0].float().cpu().numpy(), err[0, 0].cpu().numpy()


def calibrate(gen: torch.nn.Module, est: torch.nn.Module, dataset: Any, device: torch.device,
              autocast: Autocast, seed: int = 0, epoch: int = 0) -> Optional[Calibration]:
    """Fit the calibration on the validation set (`dataset[i]` = (normalised image, labels)); None
    when it has no image or no region with enough labelled pixels."""
    output: OutputSpec = gen.output
    k = 2 if output.binary else output.num_classes
    n_images = min(len(dataset), MAX_IMAGES)
    if not n_images:
        return None
    pick = sorted(set(np.linspace(0, len(dataset) - 1, n_images).round().astype(int).tolist()))
    crops = int(min(100, max(8, math.ceil(REGIONS / len(pick)))))
    rng = np.random.default_rng(seed)
    was = gen.training, est.training
    gen.eval()
    est.eval()
    rows: list[dict[str, float]] = []
    quality: list[float] = []
    try:
        for i in pick:
            image, truth = dataset[i]
            x = image[None].to(device).contiguous(memory_format=torch.channels_last)
            probs, err = predict_maps(gen, est, x, autocast)
            labels = output.labels_from_probs(probs)
            truth = truth.numpy()
            for y0, y1, x0, x1 in windows(*labels.shape, crops, rng):
                t = truth[y0:y1, x0:x1]
                if (t != IGNORE).mean() < 0.1:  # too little truth to score
                    continue
                lab = labels[y0:y1, x0:x1]
                stats = region_stats(probs[:, y0:y1, x0:x1], lab, err[y0:y1, x0:x1], k, output.binary, entropy=True)
                rows.append(stats.features())
                quality.append(image_quality(lab, t, k, output.binary)[0])
    finally:
        gen.train(was[0])
        est.train(was[1])
    if len(rows) < 2:
        return None
    return fit_calibration(rows, quality, output.binary, {"images": len(pick), "epoch": epoch})


def store_calibration(net: torch.nn.Module, config: dict[str, Any], weights: Path, last: Optional[Checkpoint], dataset: Any,
                      device: torch.device, autocast: Autocast, seed: int,
                      saving: Callable[[], AbstractContextManager]) -> Optional[Checkpoint]:
    """Fit the calibration with best.pt's generator on the validation images and store it, with the
    estimator `net` as training left it, in best.pt (and in last.pt when it holds the same generator).
    Returns last.pt as it now is."""
    best_path, last_path = weights / "best.pt", weights / "last.pt"
    if not best_path.is_file():
        return last
    best = Checkpoint.load(best_path)
    gen = best.build_generator().to(device, memory_format=torch.channels_last)
    cal = calibrate(gen, net, dataset, device, autocast, seed, best.epoch)
    changes = {"estimator": net.state_dict(), "estimator_config": config,
               "calibration": cal.to_dict() if cal is not None else None}
    with saving():
        best.replace(**changes).save(best_path)
        last = last or Checkpoint.load(last_path)
        if last.epoch == best.epoch:
            last = last.replace(**changes)
            last.save(last_path)
    return last
