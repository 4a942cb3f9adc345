"""Semi-supervised training by weak-to-strong consistency (FixMatch / UniMatch, Mean Teacher).

On every `--semi-every`-th step a batch of unlabeled crops (the weak view: the labelled images'
own crops and flips) goes through the teacher (the weights' moving average when --ema is on,
else the generator itself, in eval mode and without gradients); its confident pixels (top
probability >= `--semi-threshold`) become pseudo-labels. The student (the generator) then sees
a strongly perturbed view of the same crops (contrast / brightness jitter, blur, and CutMix
between the crops, the pseudo-labels mixed alike) and learns to predict those pseudo-labels:
a cross-entropy over all pixels, the unconfident ones counting zero, weighted by `--semi-weight`.
With `--semi-gate discriminator`, D must also accept the teacher's mask there (a real/fake D finds it
real; the flaw D expects it right). `--semi flaw` adds the flaw correction of the student's
prediction on the strong view (the frozen flaw D's error, weighted by `--semi-adv-weight`).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

from segcli.config import DataInfo, TrainConfig
from segcli.data import unlabeled_samples
from segcli.data.dataset import SegDataset
from segcli.data.io import IGNORE
from segcli.models import class_probabilities
from segcli.train import distributed
from segcli.train.loaders import train_loader, train_transform
from segcli.train.losses import cross_entropy

# (weak view, teacher logits) -> the pixels the discriminator accepts
Gate = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (strong view, student logits) -> the flaw correction of that prediction
Correction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ConsistencySettings:
    threshold: float = 0.9  # teacher confidence that makes a pixel a pseudo-label
    weight: float = 1.0  # of the unlabeled loss beside the labelled one
    every: int = 2  # an unlabeled batch on every N-th step
    gate: str = "none"  # or "discriminator": D must accept the teacher's mask too
    flaw_weight: float = 0.0  # --semi flaw: weight of the flaw correction on the strong view
    jitter: float = 0.5  # contrast / brightness jitter of the strong view, in normalised units
    blur: float = 0.5  # probability of a Gaussian blur
    cutmix: float = 0.5  # probability of pasting a box of another unlabeled crop


def strong_view(x: torch.Tensor, labels: torch.Tensor, s: ConsistencySettings) -> tuple[torch.Tensor, torch.Tensor]:
    """The strongly perturbed view of normalised crops (N, C, H, W) and their pseudo-labels (N, H, W)."""
    n = x.shape[0]
    x, labels = x.clone(), labels.clone()
    scale = 1 + (torch.rand(n, 1, 1, 1, device=x.device) * 2 - 1) * s.jitter
    shift = (torch.rand(n, 1, 1, 1, device=x.device) * 2 - 1) * s.jitter
    on = (torch.rand(n, 1, 1, 1, device=x.device) < 0.8).to(x.dtype)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = x + on * ((x - mean) * (scale - 1) + shift)
    for i in range(n):
        if float(torch.rand(())) < s.blur:
            sigma = float(torch.empty(()).uniform_(0.1, 2.0))
            x[i] = TF.gaussian_blur(x[i], [9, 9], [sigma, sigma])
    if n > 1:
        partner = torch.roll(torch.arange(n), 1)
        h, w = x.shape[-2:]
        for i in range(n):
            if float(torch.rand(())) >= s.cutmix:
                continue
            r = math.sqrt(float(torch.rand(())))  # box side ratio: area uniform in [0, 1]
            bh, bw = max(1, int(h * r)), max(1, int(w * r))
            top, left = int(torch.randint(0, h - bh + 1, ())), int(torch.randint(0, w - bw + 1, ()))
            j = int(partner[i])
            x[i, :, top:top + bh, left:left + bw] = x[j, :, top:top + bh, left:left + bw]
            labels[i, top:top + bh, left:left + bw] = labels[j, top:top + bh, left:left + bw]
    return x, labels


@torch.inference_mode()
def pseudo_labels(teacher: nn.Module, x: torch.Tensor, s: ConsistencySettings, autocast: Callable = nullcontext,
                  gate: Optional[Gate] = None) -> torch.Tensor:
    """The teacher's labels of the weak view, IGNORE where it is not confident (or the gate objects)."""
    was_training = teacher.training
    teacher.eval()
    with autocast():
        logits = teacher(x).float()
        conf, labels = class_probabilities(logits).max(1)
        keep = conf >= s.threshold
        if gate is not None:
            keep &= gate(x, logits)
    teacher.train(was_training)
    return torch.where(keep, labels, torch.full_like(labels, IGNORE)).clone()


def consistency_loss(student: nn.Module, teacher: nn.Module, x: torch.Tensor, s: ConsistencySettings,
                     autocast: Callable = nullcontext, gate: Optional[Gate] = None,
                     correction: Optional[Correction] = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The unlabeled batch's loss (and its logged parts) for the generator step."""
    pseudo = pseudo_labels(teacher, x, s, autocast, gate)
    xs, ys = strong_view(x, pseudo, s)
    with autocast():
        logits = student(xs)  # a separate pass: the labelled batch's BatchNorm statistics stay its own
    share = (ys != IGNORE).float().mean()
    loss = cross_entropy(logits, ys) * share  # the mean over all pixels, unconfident ones counting 0
    out = {"semi_ce": loss.detach(), "semi_share": share.detach()}
    total = s.weight * loss
    if correction is not None and s.flaw_weight > 0:
        fc = correction(xs, logits)
        total = total + s.flaw_weight * fc
        out["semi_flaw"] = fc.detach()
    return total, out


class ConsistencySet:
    """The unlabeled images as weak-view crops, and what the run says about them."""

    def __init__(self, cfg: TrainConfig, info: DataInfo, ctx: distributed.Context, settings: ConsistencySettings) -> None:
        self.settings = settings
        self.ds = SegDataset(unlabeled_samples(str(cfg.unlabeled)), info, transform=None, cache=cfg.cache)
        if cfg.cache:
            self.ds.preload()
        self.ds.transform = train_transform(cfg, info)
        half = max(ctx.world, cfg.batch_size // 2 // ctx.world * ctx.world)  # half the labelled batch
        self.loader = train_loader(self.ds, cfg, ctx, cfg.seed + 10_000, batch_size=half)
        self.started: Optional[int] = 0  # from the first step
        self.share_sum, self.share_n = 0.0, 0

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless batches; each pass over the set gets its own shuffle, fixed by the epoch."""
        for k in range(10**9):
            self.loader.sampler.set_epoch(epoch * 100_000 + k)
            yield from self.loader

    def wants_batch(self, step: int, gan_now: bool) -> bool:
        return step % self.settings.every == 0

    def record(self, losses: dict[str, Any]) -> None:
        if "semi_share" in losses:
            self.share_sum, self.share_n = self.share_sum + float(losses["semi_share"]), self.share_n + 1

    def pixel_share(self) -> float:
        """Of the unlabeled pixels, the share with a pseudo-label over this epoch's steps (then reset)."""
        share = self.share_sum / max(self.share_n, 1)
        self.share_sum, self.share_n = 0.0, 0
        return share

    def after_validation(self, *args: Any) -> bool:
        return False

    def resume(self, *args: Any) -> None:
        return None

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor], gen: nn.Module, teacher: nn.Module, adversary: Any,
             autocast: Callable) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one unlabeled batch (the images only: their masks are empty)."""
        x = batch[0]
        gate = None
        if self.settings.gate == "discriminator":
            gate = lambda xv, logits: adversary.gate(xv, logits, gen.output)  # noqa: E731
        correction = adversary.correction if self.settings.flaw_weight > 0 else None
        return consistency_loss(gen, teacher, x, self.settings, autocast, gate, correction)

    def summary(self) -> str:
        flaw = " and the flaw D's correction" if self.settings.flaw_weight > 0 else ""
        return (f"consistency with a teacher{flaw} (threshold {self.settings.threshold}, every "
                f"{self.settings.every} steps)")
