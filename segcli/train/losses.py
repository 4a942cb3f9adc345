"""Segmentation and adversarial losses. Labels use IGNORE for pixels that count in neither."""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from segcli.data.io import IGNORE
from segcli.models import class_probabilities


def one_hot(labels: torch.Tensor, channels: int) -> torch.Tensor:
    """(N,H,W) labels to (N,K,H,W) float one-hot; ignored pixels become all-zero."""
    valid = labels != IGNORE
    oh = F.one_hot(labels.clamp(max=channels - 1) * valid, channels).permute(0, 3, 1, 2).float()
    return oh * valid.unsqueeze(1)


BatchSum = Callable[[torch.Tensor], torch.Tensor]


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def dice_loss(probs: torch.Tensor, labels: torch.Tensor, eps: float = 1.0,
              batch_sum: Optional[BatchSum] = None) -> torch.Tensor:
    """Soft Dice over classes present in the batch, ignored pixels left out.

    `batch_sum` adds the per-class sums over processes (DDP): the Dice of the global batch.
    """
    total = batch_sum or _same
    valid = (labels != IGNORE).unsqueeze(1).float()
    target = one_hot(labels, probs.shape[1])
    p = probs * valid
    inter = total((p * target).sum(dim=(0, 2, 3)))
    t_sum = total(target.sum(dim=(0, 2, 3)))
    denom = total(p.sum(dim=(0, 2, 3))) + t_sum
    dice = (2 * inter + eps) / (denom + eps)
    present = t_sum > 0
    if not present.any():
        return probs.sum() * 0.0
    return 1 - dice[present].mean()


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, batch_sum: Optional[BatchSum] = None,
                  class_weights: Optional[torch.Tensor] = None, focal_gamma: float = 0.0) -> torch.Tensor:
    """Mean CE over non-ignored pixels (BCE for one-channel binary logits); 0 when none are left.

    `batch_sum` (autograd-aware sum over DDP processes) makes it the global batch's mean.
    `class_weights` (K,) weights each pixel by its true class (a weighted mean, as PyTorch's);
    `focal_gamma` > 0 makes it focal: each pixel's CE times (1 - p_true)^gamma.
    """
    total = batch_sum or _same
    logits = logits.float()
    valid = labels != IGNORE
    target = labels.clamp(max=max(logits.shape[1] - 1, 1)) * valid  # ignored pixels: any class, weight 0
    if logits.shape[1] == 1:
        ce = F.binary_cross_entropy_with_logits(logits[:, 0], target.float(), reduction="none")
    else:
        ce = F.cross_entropy(logits, target, reduction="none")
    if focal_gamma > 0:
        ce = (1 - torch.exp(-ce)).pow(focal_gamma) * ce  # exp(-ce) is the probability of the true class
    w = valid.float()
    if class_weights is not None:
        w = w * class_weights.to(logits.device, torch.float32)[target]
    # sums, so an all-ignored batch gives 0 rather than NaN
    return total((ce * w).sum()) / total(w.sum()).clamp(min=1e-6)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, batch_sum: Optional[BatchSum] = None,
                      class_weights: Optional[torch.Tensor] = None, focal_gamma: float = 0.0) -> torch.Tensor:
    """(Weighted / focal) cross-entropy + Dice, means over the valid pixels.

    With `batch_sum`, N processes compute the loss one process would on all their images.
    """
    logits = logits.float()
    ce = cross_entropy(logits, labels, batch_sum, class_weights, focal_gamma)
    return ce + dice_loss(class_probabilities(logits), labels, batch_sum=batch_sum)


def adversarial_loss(pred: torch.Tensor, real: bool, mode: str, target: float = 1.0) -> torch.Tensor:
    """D's (or G's) loss on scores `pred` for the given side.

    `target` < 1 is one-sided label smoothing for the real side of D's loss.
    For hinge, G's loss is -mean(pred); call it with mode='hinge_g'.
    """
    pred = pred.float()
    if mode == "lsgan":
        return F.mse_loss(pred, torch.full_like(pred, target if real else 0.0))
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(pred, torch.full_like(pred, target if real else 0.0))
    if mode == "hinge":
        return F.relu(1.0 - pred).mean() if real else F.relu(1.0 + pred).mean()
    if mode == "hinge_g":
        return -pred.mean()
    raise ValueError(f"unknown GAN loss {mode}")


def generator_adv_loss(pred: torch.Tensor, mode: str) -> torch.Tensor:
    return adversarial_loss(pred, True, "hinge_g" if mode == "hinge" else mode)
