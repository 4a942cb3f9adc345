"""The training schedule: learning rate as a function of progress, and the --time budget."""

from __future__ import annotations

import math
import time
from typing import Callable, Optional

import torch


class Clock:
    """The --time budget: progress for the LR schedule, and when to stop so that the last
    validation and the run's final files still fit inside the budget."""

    def __init__(self, budget: Optional[float], elapsed_before: float = 0.0,
                 agree: Callable[[float], float] = lambda x: x, started: Optional[float] = None) -> None:
        """`started`: when the command began (time.monotonic()), so its start-up counts too."""
        self.budget = budget
        self.t0 = (time.monotonic() if started is None else started) - elapsed_before
        self.val_cost = 0.0  # seconds of the latest validation, measured
        self.save_cost = 0.0  # seconds of the latest best.pt + last.pt + metrics.csv, measured
        self.calibration = False  # the run ends with the quality estimator's calibration (about 1.5 validations)
        self.agree = agree  # rank 0's clock under DDP, so every process stops together

    def elapsed(self) -> float:
        return self.agree(time.monotonic() - self.t0) if self.budget else time.monotonic() - self.t0

    def progress(self) -> float:
        return self.elapsed() / self.budget if self.budget else 0.0

    # What a run does after its last step: the last validation and its checkpoints (both measured),
    # the quality estimator's calibration (a pass over the validation images with the estimator and
    # the features of random crops) and best.pt + last.pt written again with it, then the plots and
    # exiting (about a second on a CPU).
    FINISH = 2.0

    def must_stop(self) -> bool:
        val, save = (2.5, 2.0) if self.calibration else (1.0, 1.0)
        after = 1.3 * (val * self.val_cost + save * self.save_cost) + self.FINISH
        return bool(self.budget) and self.elapsed() + after >= self.budget

    def validation_due(self, trained: float) -> bool:
        """After `trained` seconds of training since the last validation: is another one due? Under
        --time a validation and the checkpoints it writes may cost ~10% of the training time; rank
        0's seconds decide, so that every process validates (a collective) or none does."""
        return self.budget is None or self.agree(trained) >= 9 * (self.val_cost + self.save_cost)


def lr_at(base: float, progress: float, warmup: float = 0.03) -> float:
    """Linear warm-up, then cosine decay to 1% of base, as a function of training progress in [0, 1]."""
    if progress < warmup:
        return base * (0.1 + 0.9 * progress / warmup)
    p = min(1.0, (progress - warmup) / (1 - warmup))
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * p)))


def set_lr(opt: Optional[torch.optim.Optimizer], lr: float) -> None:
    if opt is not None:
        for group in opt.param_groups:
            group["lr"] = lr


def ramp(warmup: float, epochs_done: float, progress: float) -> float:
    """0 -> 1 over `warmup` epochs; warmup < 0: over the first quarter of the run; 0: at once."""
    if warmup < 0:
        return min(1.0, progress / 0.25)
    return min(1.0, epochs_done / warmup) if warmup > 0 else 1.0
