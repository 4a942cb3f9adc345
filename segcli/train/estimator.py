"""Training the quality estimator beside D, and calibrating it when the run ends.

- `EstimatorTrainer.step`: on the D steps (every `--d-every`-th step) the estimator sees the same
  batch D sees, the training crops and the generator's *detached* probabilities, and learns where
  the generator's labels disagree with the truth (binary cross-entropy; ignored pixels left out).
  It never touches the generator's graph, so the generator's updates are the same with or without
  it; as the generator learns, the estimator sees its errors at every stage of training.
- `calibrate`: at the end of the run, the best generator and the trained estimator on validation
  regions (whole images and random crops of 25-100% of each side), where the true quality is
  known; a ridge regression maps the regions' features (mean margin, 1 - mean error, expected mIoU)
  to their mIoU (binary: foreground Dice), and the baselines get the same treatment
  (segcli.quality.fit_calibration).
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from segcli.checkpoint import Checkpoint
from segcli.data.io import IGNORE
from segcli.metrics import image_quality
from segcli.models import OutputSpec
from segcli.models.estimator import WIDTH, build_estimator
from segcli.quality import Calibration, fit_calibration, region_stats

LR = 2e-3  # AdamW, on the generator's warm-up + cosine schedule
WEIGHT_DECAY = 1e-4
MAX_IMAGES = 200  # validation images calibration looks at (evenly spread)
REGIONS = 600  # calibration regions wanted in all: whole images plus random crops
MIN_SIDE = 32
Autocast = Callable[[], AbstractContextManager]


class EstimatorTrainer:
    """The estimator, its optimizer and (fp16) grad scaler; `net_t` is the DDP-wrapped module under torchrun."""

    def __init__(self, in_channels: int, num_classes: int, output: OutputSpec, device: torch.device,
                 autocast: Autocast = nullcontext, scaler: Optional[Any] = None, width: int = WIDTH) -> None:
        self.output, self.autocast, self.scaler, self.width = output, autocast, scaler, width
        self.net = build_estimator(in_channels, num_classes, output.binary, width).to(
            device, memory_format=torch.channels_last)
        self.net_t = self.net
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)

    @property
    def config(self) -> dict[str, Any]:
        return {"width": self.width}

    def step(self, image: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """One update on a batch the generator has just predicted (logits detached here)."""
        logits = logits.detach().float()
        probs = self.output.probabilities(logits)
        wrong = (self.output.labels(logits) != labels).float()
        valid = (labels != IGNORE).float()
        self.net.train()
        with self.autocast():
            logit = self.net_t(image, probs)
        bce = F.binary_cross_entropy_with_logits(logit.float()[:, 0], wrong, reduction="none")
        loss = (bce * valid).sum() / valid.sum().clamp(min=1.0)  # every process steps, even on an all-ignored crop
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        return {"e_loss": loss.detach()}


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


def store_calibration(trainer: EstimatorTrainer, weights: Path, last: Optional[Checkpoint], dataset: Any,
                      device: torch.device, autocast: Autocast, seed: int,
                      saving: Callable[[], AbstractContextManager]) -> Optional[Checkpoint]:
    """Fit the calibration with best.pt's generator on the validation images and store it, with the
    estimator as training left it, in best.pt (and in last.pt when it holds the same generator).
    Returns last.pt as it now is."""
    best_path, last_path = weights / "best.pt", weights / "last.pt"
    if not best_path.is_file():
        return last
    best = Checkpoint.load(best_path)
    gen = best.build_generator().to(device, memory_format=torch.channels_last)
    cal = calibrate(gen, trainer.net, dataset, device, autocast, seed, best.epoch)
    changes = {"estimator": trainer.net.state_dict(), "estimator_config": trainer.config,
               "calibration": cal.to_dict() if cal is not None else None}
    with saving():
        best.replace(**changes).save(best_path)
        last = last or Checkpoint.load(last_path)
        if last.epoch == best.epoch:
            last = last.replace(**changes)
            last.save(last_path)
    return last
