"""The unlabeled images (`--unlabeled`) as a part of the loop (segcli.train.parts).

How they teach is the set's own business (--semi consistency / flaw: segcli.train.consistency;
--semi adversarial: segcli.train.semi); this part draws their batches on the steps the set wants,
hands the set the generator, the teacher and the run's discriminator, and carries what the set says
at validations and in the epoch's row.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Union

import torch
from torch import nn

from segcli.checkpoint import Checkpoint
from segcli.config import DataInfo, TrainConfig
from segcli.device import Precision
from segcli.train import distributed
from segcli.train.consistency import ConsistencySet, ConsistencySettings
from segcli.train.ema import ModelEMA
from segcli.train.parts import Losses, Part, Run, Step
from segcli.train.semi import SemiSettings, UnlabeledSet



def unlabeled_set(cfg: TrainConfig, info: DataInfo, ctx: distributed.Context,
                  precision: Precision) -> Union[UnlabeledSet, ConsistencySet]:
    """The unlabeled images and how they teach (--semi)."""
    if cfg.semi in ("consistency", "flaw"):
        flaw = float(cfg.semi_adv_weight or 0.0) if cfg.semi == "flaw" else 0.0
        settings = ConsistencySettings(cfg.semi_threshold, cfg.semi_weight, cfg.semi_every, cfg.semi_gate,
                                       flaw_weight=flaw)
        return ConsistencySet(cfg, info, ctx, settings)
    semi = SemiSettings(cfg.semi_threshold, cfg.semi_weight, cfg.semi_adv_weight, cfg.semi_start)
    return UnlabeledSet(cfg, info, ctx, ctx.device, precision.autocast, semi)


class UnlabeledPart(Part):
    """Draws the unlabeled batches and adds their loss to G's step."""

    def __init__(self, images: Union[UnlabeledSet, ConsistencySet], adversary: Optional[Any],
                 ema: Optional[ModelEMA], cfg: TrainConfig, precision: Precision, device: torch.device) -> None:
        self.images, self.adversary, self.ema = images, adversary, ema
        self.cfg, self.autocast, self.device = cfg, precision.autocast, device
        self.batches: Optional[Iterator[tuple[torch.Tensor, torch.Tensor]]] = None

    def start_epoch(self, epoch: int) -> None:
        self.batches = self.images.batches(epoch) if self.images.started is not None else None

    def generator_term(self, step: Step, gen: nn.Module) -> tuple[Optional[torch.Tensor], Losses]:
        if self.batches is None or not self.images.wants_batch(step.index, step.gan_now):
            return None, {}
        image, pseudo = next(self.batches)
        batch = (image.to(self.device, non_blocking=True, memory_format=torch.channels_last),
                 pseudo.to(self.device, non_blocking=True))
        # the bare generator under DDP: its gradients still reach the same all-reduce hooks
        gen = getattr(gen, "module", gen)
        teacher = self.ema.module if self.ema is not None else gen
        loss, out = self.images.loss(batch, gen, teacher, self.adversary, self.autocast)
        self.images.record(out)
        return loss, out

    def after_validation(self, run: Run, epoch: int, fit: float, improved: bool) -> bool:
        if self.adversary is None:
            return False
        progress = max(epoch / run.cfg.epochs, run.clock.progress())
        return self.images.after_validation(epoch, progress, fit, improved, run.gen, self.adversary,
                                            run.weights / "best.pt")

    def restore(self, ckpt: Checkpoint, run: Run) -> None:
        if self.adversary is not None:
            self.images.resume(run.history, run.cfg.epochs, run.clock.budget, run.weights / "best.pt", run.gen,
                               self.adversary)

    def epoch_columns(self) -> dict[str, Any]:
        return {"semi_pixels": self.images.pixel_share()}  # the pseudo-labels this epoch trained on

    def ready_to_stop(self) -> bool:
        return self.images.started is not None

    def summary(self) -> str:
        return self.images.summary()
