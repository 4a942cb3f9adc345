"""Semi-supervised adversarial training on unlabeled images (after Hung et al. 2018, AdvSemiSeg).

On an unlabeled batch the generator gets (1) the adversarial loss: make D believe its
prediction is a real mask, and (2) a self-training cross-entropy towards pseudo-labels on the
pixels where D's per-pixel confidence exceeds a threshold. D itself is
trained on labeled pairs only, so its confidence means "looks like a real mask".

Where AdvSemiSeg takes the pseudo-labels from the same forward pass (G's own argmax, which
teaches G little it does not already predict), segcli takes them from a teacher: the
generator at its best validation so far, run in eval mode over each whole unlabeled image.
The labels are then fixed while G trains on augmented crops of them (docs/semi-supervised.md: what it measured).

The unlabeled images join (both terms at once) by default (`--semi-start -1`) when the labeled
ones are exhausted: validation has stopped improving. An unlabeled pass costs about a third of
the epochs of a time budget, which a model that is still improving needs more (docs/semi-supervised.md).
"""

from __future__ import annotations

import copy
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from segcli.checkpoint import Checkpoint
from segcli.config import DataInfo, TrainConfig
from segcli.data import unlabeled_samples
from segcli.data.dataset import SegDataset
from segcli.data.io import IGNORE, normalize
from segcli.models import class_probabilities
from segcli.train import distributed
from segcli.train.loaders import train_loader, train_transform
from segcli.train.gan import adversarial_term
from segcli.train.losses import cross_entropy


@dataclass
class SemiSettings:
    threshold: float = 0.2  # D confidence above which a pixel becomes a pseudo-label (paper: 0.2)
    weight: float = 0.1  # self-training CE weight (paper: lambda_semi = 0.1)
    adv_weight: float = 0.001  # adversarial weight on unlabeled images (paper: 0.001)
    start: float = -1.0  # epochs before self-training; -1: once validation stops improving


class StartRule:
    """When the unlabeled images join: after `start` epochs, or (start < 0) at a plateau.

    A plateau: no validation gain of MIN_GAIN for a tenth of the run and 3 validations, and
    not before a quarter of it (an untrained teacher would teach its errors).
    """

    MIN_GAIN, PATIENCE, SPAN, EARLIEST = 0.005, 3, 0.1, 0.25

    def __init__(self, start: float) -> None:
        self.start = start
        self.mark_fit, self.mark_progress, self.stale = -1.0, 0.0, 0

    def check(self, epochs_done: int, progress: float, fit: float) -> bool:
        """Called at each validation; True once self-training should run."""
        if self.start >= 0:
            return epochs_done >= self.start
        if fit > self.mark_fit + self.MIN_GAIN:
            self.mark_fit, self.mark_progress, self.stale = fit, progress, 0
        else:
            self.stale += 1
        return (progress >= self.EARLIEST and self.stale >= self.PATIENCE
                and progress - self.mark_progress >= self.SPAN)


def unlabeled_terms(
    disc: nn.Module, image: torch.Tensor, pseudo: torch.Tensor, logits: torch.Tensor, mode: str,
    s: SemiSettings, autocast=nullcontext,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The generator's extra loss on an unlabeled batch (pseudo-labels: IGNORE where there are none)."""
    ce = cross_entropy(logits, pseudo)  # 0 before the first pseudo-labels
    loss, out = s.weight * ce, {"semi_ce": ce.detach()}
    if s.adv_weight > 0:
        adv = adversarial_term(disc, image, logits, mode, autocast)
        loss = loss + s.adv_weight * adv
        out["semi_adv"] = adv.detach()
    return loss, out


class UnlabeledSet:
    """The unlabeled images, their loader (own seeded sampler), their pseudo-labels and when they join."""

    def __init__(self, cfg: TrainConfig, info: DataInfo, ctx: distributed.Context, device: torch.device,
                 autocast, settings: SemiSettings) -> None:
        self.cfg, self.ctx, self.device, self.autocast, self.settings = cfg, ctx, device, autocast, settings
        self.ds = SegDataset(unlabeled_samples(cfg.unlabeled), info, transform=None, cache=cfg.cache)
        if cfg.cache:
            self.ds.preload()
        self.ds.transform = train_transform(cfg, info)
        self.loader = self._loader()
        self.rule = StartRule(settings.start)
        self.started: Optional[int] = None  # the epoch after which self-training began
        self.share = 0.0  # of unlabeled pixels with a pseudo-label
        self.cost = 0.0  # seconds the last labelling took
        self.last: Optional[float] = None  # when it ended

    def _loader(self) -> DataLoader:
        # rebuilt after each labelling: persistent workers would keep the old labels
        return train_loader(self.ds, self.cfg, self.ctx, self.cfg.seed + 10_000)

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless batches; each pass over the set gets its own shuffle, fixed by the epoch."""
        for k in range(10**9):
            self.loader.sampler.set_epoch(epoch * 100_000 + k)
            yield from self.loader

    def due(self) -> bool:
        """Labelling may take ~10% of the training time, as validation does under --time.

        Rank 0 decides, so all processes of a distributed run relabel together.
        """
        wait = 0.0 if self.last is None else 9 * self.cost - (time.monotonic() - self.last)
        return self.ctx.agree(wait) <= 0

    def after_validation(self, epochs_done: int, progress: float, fit: float, improved: bool,
                         gen: nn.Module, disc: Any, best: Path) -> bool:
        """Start self-training when the rule says so (True then); later, relabel as validation improves."""
        if self.started is None:
            # rank 0 decides: the clock's progress differs by milliseconds between processes
            if self.ctx.agree(float(self.rule.check(epochs_done, progress, fit))) > 0:
                self.started = epochs_done
                self.relabel(gen if improved else self._teacher(gen, best), disc)
                return True
        elif improved and self.due():
            self.relabel(gen, disc)
        return False

    def resume(self, history: list[dict], epochs: int, budget: Optional[float], best: Path,
               gen: nn.Module, disc: Any) -> None:
        """Replay the start rule over the run so far; if it had started, relabel at once from best.pt."""
        elapsed = 0.0
        for row in history:
            elapsed += float(row.get("seconds") or 0)
            fit = float(row.get("val_mIoU", "nan"))
            if self.started is None and np.isfinite(fit):  # validated epochs only
                progress = max(row["epoch"] / epochs, elapsed / budget if budget else 0.0)
                if self.rule.check(int(row["epoch"]), progress, fit):
                    self.started = int(row["epoch"])
        if self.started is not None:
            self.relabel(self._teacher(gen, best), disc)

    @staticmethod
    def _teacher(gen: nn.Module, best: Path) -> nn.Module:
        teacher = copy.deepcopy(gen)
        teacher.load_state_dict(Checkpoint.load(best).generator)
        return teacher

    def wants_batch(self, step: int, gan_now: bool) -> bool:
        return gan_now  # the unlabeled terms need D: on the steps that run it

    def record(self, losses: dict) -> None:
        return None

    def pixel_share(self) -> float:
        return self.share

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor], gen: nn.Module, teacher: nn.Module, adversary: Any,
             autocast: Callable) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The adversarial and self-training terms of one unlabeled batch (images, pseudo-labels)."""
        image, pseudo = batch
        with autocast():
            logits = gen(image)  # a separate pass: the labelled batch's BatchNorm statistics stay its own
        return unlabeled_terms(adversary.module, image, pseudo, logits, self.cfg.gan, self.settings, autocast)

    def summary(self) -> str:
        if self.started is None:
            return "not used: validation was still improving on the labeled images (a longer run lets them join)"
        return f"self-training from epoch {self.started}; {self.share:.0%} of their pixels pseudo-labelled at the end"

    @torch.inference_mode()
    def relabel(self, gen: nn.Module, disc: Any) -> float:
        """Pseudo-label every unlabeled image with G's argmax where D's confidence exceeds the threshold."""
        t0 = time.monotonic()
        was_training = gen.training
        gen.eval(), disc.module.eval()
        used = total = 0
        for i in range(len(self.ds)):
            image, _ = self.ds.load(i)
            x = torch.from_numpy(normalize(image, self.ds.info.mean, self.ds.info.std))
            x = x[None].to(self.device, memory_format=torch.channels_last)
            with self.autocast():
                probs = class_probabilities(gen(x).float())
                conf = disc.confidence(x, probs)
            keep = conf > self.settings.threshold
            pseudo = torch.where(keep, probs.argmax(1), IGNORE)[0]
            self.ds.pseudo[i] = pseudo.to(torch.uint8).cpu().numpy()
            used, total = used + int(keep.sum()), total + keep.numel()
        gen.train(was_training), disc.module.train()
        self.loader = self._loader()
        self.share = used / max(total, 1)
        self.last = time.monotonic()
        self.cost = self.last - t0
        return self.share
