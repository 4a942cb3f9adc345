"""The networks that judge G's masks during training, as parts of the loop (segcli.train.parts).

- `FlawDiscriminator` (`--gan flaw`): D predicts, per pixel, where G's label is wrong (the true
  error map of each labelled crop is its target), and G's term lowers the error D sees in G's own
  prediction (flaw correction, Ke et al. 2020). After training D is the quality estimator: one
  network and one optimizer where the seed trained two judges.
- `RealFakeDiscriminator` (`--gan lsgan|vanilla|hinge`): the seed's D, telling (image, truth) from
  (image, G's probabilities); G's term makes its prediction look real.
- `QualityJudge`: beside a real/fake D or a plain U-Net (`--gan none`), the error estimator trained
  as the flaw detector is, but never teaching G (`--quality`, the default).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from segcli.checkpoint import Checkpoint
from segcli.config import TrainConfig
from segcli.device import Precision
from segcli.models import OutputSpec, class_probabilities
from segcli.models.estimator import WIDTH, build_estimator
from segcli.train.distributed import Context
from segcli.train.estimator import WEIGHT_DECAY, store_calibration
from segcli.train.gan import (StepSettings, adam, adversarial_term, discriminator_step, flaw_inputs, flaw_step,
                             flaw_term)
from segcli.train.parts import Losses, Part, Run, Step
from segcli.train.schedule import lr_at, set_lr
from segcli.train.warmstart import load_weights


JUDGE_LR = 2e-3  # the judge beside a real/fake D (AdamW, on the generator's schedule)


def _accept(score: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (N, 1, h, w) or (N, 1) score in [0, 1] as an (N, H, W) map at the image's size."""
    score = score[:, :, None, None] if score.dim() == 2 else score
    return F.interpolate(score, size=size, mode="bilinear", align_corners=False)[:, 0]


class RealFakeDiscriminator(Part):
    """The seed's D and its optimizer (Adam, betas 0.5 / 0.999)."""

    def __init__(self, disc: nn.Module, cfg: TrainConfig, settings: StepSettings, precision: Precision) -> None:
        self.module, self.module_t = disc, disc  # module_t: DDP-wrapped under torchrun
        self.cfg, self.settings, self.autocast, self.scaler = cfg, settings, precision.autocast, precision.scaler()
        self.opt = adam(disc.parameters(), decoupled=False, lr=cfg.lr_d, betas=(0.5, 0.999))

    def modules(self) -> dict[str, nn.Module]:
        return {"discriminator": self.module}

    def distribute(self, ctx: Context) -> None:
        self.module_t = ctx.wrap(self.module)

    def wrap_step(self, wrap: Callable[[nn.Module], Any]) -> None:
        self.module_t = wrap(self.module_t)

    def set_progress(self, progress: float) -> None:
        set_lr(self.opt, lr_at(self.cfg.lr_d, progress))

    def start_epoch(self, epoch: int) -> None:
        self.module.train()

    def update(self, step: Step) -> Losses:
        if not step.gan_now:
            return {}
        fake = class_probabilities(step.logits.detach().float())
        return discriminator_step(self.module_t, self.opt, step.image, step.labels, fake, self.settings,
                                  self.autocast, self.scaler)

    def generator_term(self, step: Step, gen: nn.Module) -> tuple[Optional[torch.Tensor], Losses]:
        if not step.gan_now or step.adv_weight <= 0:
            return None, {}
        adv = adversarial_term(self.module, step.image, step.logits, self.cfg.gan, self.autocast)
        return step.adv_weight * adv, {"g_adv": adv.detach()}

    def confidence(self, x: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """D's 'real' confidence (N, H, W) in [0, 1] of (image, class probabilities)."""
        score = self.module(torch.cat([x, probs], 1)).float()
        score = score.clamp(0, 1) if self.cfg.gan == "lsgan" else torch.sigmoid(score)
        return _accept(score, tuple(x.shape[-2:]))

    def gate(self, x: torch.Tensor, logits: torch.Tensor, output: OutputSpec) -> torch.Tensor:
        """Where D finds G's mask real (the pixels --semi-gate discriminator keeps)."""
        return self.confidence(x, class_probabilities(logits.float())) > 0.5

    def state(self, last: bool) -> dict[str, Any]:
        return {"discriminator": self.module.state_dict(), **({"opt_d": self.opt.state_dict()} if last else {})}

    def restore(self, ckpt: Checkpoint, run: Run) -> None:
        if ckpt.discriminator is not None:
            self.module.load_state_dict(ckpt.discriminator)
        if ckpt.opt_d is not None:
            self.opt.load_state_dict(ckpt.opt_d)

    def warm_start(self, ckpt: Checkpoint) -> list[str]:
        return ["discriminator"] if load_weights(self.module, ckpt.discriminator) else []

    def epoch_columns(self) -> dict[str, Any]:
        return {"lr_d": self.opt.param_groups[0]["lr"]}


class QualityJudge(Part):
    """The error estimator learning G's error map on the D steps, never touching G's graph; calibrated
    at the end of the run (segcli.train.estimator) and saved as the model's quality estimator."""

    role = ""  # "discriminator" when the judge is also the run's D
    loss_key = "e_loss"

    def __init__(self, cfg: TrainConfig, in_channels: int, num_classes: int, output: OutputSpec,
                 device: torch.device, precision: Precision, lr: float = JUDGE_LR, width: int = WIDTH) -> None:
        self.cfg, self.output, self.lr, self.width = cfg, output, lr, width
        self.autocast, self.scaler = precision.autocast, precision.scaler()
        self.module = build_estimator(in_channels, num_classes, output.binary, width).to(
            device, memory_format=torch.channels_last)
        self.module_t = self.module
        self.opt = adam(self.module.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
        self.keep = cfg.quality  # ship it in the model files (and calibrate it)

    @property
    def config(self) -> dict[str, Any]:
        return {"width": self.width, **({"role": self.role} if self.role else {})}

    def modules(self) -> dict[str, nn.Module]:
        return {self.role or "quality estimator": self.module}

    def distribute(self, ctx: Context) -> None:
        self.module_t = ctx.wrap(self.module)

    def wrap_step(self, wrap: Callable[[nn.Module], Any]) -> None:
        self.module_t = wrap(self.module_t)

    def set_progress(self, progress: float) -> None:
        set_lr(self.opt, lr_at(self.lr, progress))

    def update(self, step: Step) -> Losses:
        if not step.gan_now:
            return {}
        return flaw_step(self.module_t, self.opt, step.image, step.logits, step.labels, self.output, self.autocast,
                         self.scaler, self.loss_key)

    def state(self, last: bool) -> dict[str, Any]:
        if not (self.keep or last):
            return {}
        return {"estimator": self.module.state_dict(), "estimator_config": self.config,
                **({self._opt_field: self.opt.state_dict()} if last else {})}

    _opt_field = "opt_e"

    def restore(self, ckpt: Checkpoint, run: Run) -> None:
        if ckpt.estimator is not None:
            self.module.load_state_dict(ckpt.estimator)
        opt_state = getattr(ckpt, self._opt_field)
        if opt_state is not None:
            self.opt.load_state_dict(opt_state)

    def warm_start(self, ckpt: Checkpoint) -> list[str]:  # the flaw D and the judge are one architecture
        return list(self.modules()) if load_weights(self.module, ckpt.estimator) else []

    def finish(self, run: Run) -> None:
        run.ctx.average_buffers(self.module)  # every process takes part; rank 0 calibrates and saves
        if run.ctx.main and self.keep:
            run.last = store_calibration(self.module, self.config, run.weights, run.last, run.val_dl.dataset,
                                         run.device, run.precision.autocast, run.cfg.seed, run.guard.saving)


class FlawDiscriminator(QualityJudge):
    """`--gan flaw`: the judge is the discriminator, and G learns from it."""

    role = "discriminator"
    loss_key = "d_loss"
    _opt_field = "opt_d"

    def __init__(self, cfg: TrainConfig, in_channels: int, num_classes: int, output: OutputSpec,
                 device: torch.device, precision: Precision) -> None:
        super().__init__(cfg, in_channels, num_classes, output, device, precision, lr=cfg.lr_d)

    def start_epoch(self, epoch: int) -> None:
        self.module.train()

    def update(self, step: Step) -> Losses:
        if not step.gan_now:
            return {}
        inputs = None
        if step.adv_weight > 0:  # G's term follows: D's inputs once, for both
            inputs = step.shared["flaw_inputs"] = flaw_inputs(self.module, step.image, step.logits, self.output,
                                                              self.autocast)
        return flaw_step(self.module_t, self.opt, step.image, step.logits, step.labels, self.output, self.autocast,
                         self.scaler, self.loss_key, inputs)

    def generator_term(self, step: Step, gen: nn.Module) -> tuple[Optional[torch.Tensor], Losses]:
        if not step.gan_now or step.adv_weight <= 0:
            return None, {}
        fc = flaw_term(self.module, step.image, step.logits, self.output, self.autocast, step.shared.get("flaw_inputs"))
        return step.adv_weight * fc, {"g_adv": fc.detach()}

    def correction(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The flaw correction of a prediction on other images (the unlabeled ones, --semi flaw)."""
        return flaw_term(self.module, x, logits, self.output, self.autocast)

    def gate(self, x: torch.Tensor, logits: torch.Tensor, output: OutputSpec) -> torch.Tensor:
        """Where D expects G's label to be right (error probability below one half)."""
        return torch.sigmoid(self.module(x, output.probabilities(logits.float())).float())[:, 0] < 0.5

    def epoch_columns(self) -> dict[str, Any]:
        return {"lr_d": self.opt.param_groups[0]["lr"]}
