"""An exponential moving average of the generator's weights (Polyak averaging, as Mean Teacher,
timm's ModelEmaV2 and Ultralytics keep one).

The raw weights keep training (and are saved in last.pt so that --resume continues them); each
validation scores both and the better becomes the epoch's model (segcli.train.engine). Until
`1 / (1 - decay)` updates have been seen the average is a plain running mean of all the weights
so far (d_n = min(decay, n / (n + 1))): a slower ramp (TensorFlow's (1 + n) / (10 + n)) gave no
gain on ISBI with 4 labelled images, where the running mean gave +0.02 test mIoU.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import torch
from torch import nn

from segcli.train.parts import Part

StateDict = dict[str, Any]


class ModelEMA:
    """The average model (`module`, in eval mode, never trained directly) and its update count."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = decay, 0
        # floating-point tensors are averaged; integer buffers (BatchNorm's batch count) copied
        self._avg = [t for t in self.module.state_dict().values() if t.is_floating_point()]
        self._int = [t for t in self.module.state_dict().values() if not t.is_floating_point()]

    def current_decay(self) -> float:
        n = self.updates
        return min(self.decay, n / (n + 1.0))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards `model`'s weights and buffers (call after each optimizer step)."""
        self.updates += 1
        d = self.current_decay()
        values = model.state_dict().values()
        src_avg = [t for t in values if t.is_floating_point()]
        src_int = [t for t in values if not t.is_floating_point()]
        torch._foreach_lerp_(self._avg, src_avg, 1.0 - d)
        for dst, src in zip(self._int, src_int):
            dst.copy_(src)

    def state(self) -> tuple[StateDict, int]:
        return self.module.state_dict(), self.updates

    def load(self, state: StateDict, updates: int) -> None:
        self.module.load_state_dict(state)
        self.updates = int(updates)


class EmaPart(Part):
    """The moving average as a part of the loop: it follows G after each step and is saved with it."""

    def __init__(self, ema: ModelEMA) -> None:
        self.ema = ema

    def after_step(self, gen: nn.Module) -> None:
        self.ema.update(gen)

    def state(self, last: bool) -> dict[str, Any]:
        if not last:  # best.pt's generator is already the better of the two (Run.model)
            return {}
        return {"ema_generator": self.ema.module.state_dict(), "ema_updates": self.ema.updates}

    def restore(self, ckpt: Any, run: Any) -> None:
        if ckpt.ema_generator is not None:
            self.ema.load(ckpt.ema_generator, ckpt.ema_updates)
            run.use_ema = bool(run.history and run.history[-1].get("ema") == 1)


def build_ema(model: nn.Module, decay: float) -> Optional[ModelEMA]:
    """The EMA for `--ema DECAY` (0: none; the raw weights are then the model)."""
    return ModelEMA(model, decay) if decay > 0 else None
