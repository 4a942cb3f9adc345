"""Guards for long training runs: divergence detection, and Ctrl-C handled at safe points
so a run can always be resumed.

The engine calls these from a few lines; nothing here prints.
"""

from __future__ import annotations

import math
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import torch

from segcli.errors import Interrupted, TrainingDiverged


def check_losses(means: Mapping[str, float], epoch: int, step: int, run_dir: Path, saved_epoch: int) -> None:
    """Stop a diverged run: non-finite running loss means (already synced for the progress bar)."""
    bad = {k: v for k, v in means.items() if not math.isfinite(v)}
    if bad:
        what = ", ".join(f"{k}={v}" for k, v in bad.items())
        raise TrainingDiverged(f"training diverged at epoch {epoch}, step {step} ({what}); " + _kept(run_dir, saved_epoch)
                               + "; retry with a lower --lr / --lr-d or --adv-weight, or --precision 32")


def module_finite(module: torch.nn.Module) -> bool:
    """All parameters and buffers finite, with one host sync."""
    flags = [t.isfinite().all() for t in list(module.parameters()) + list(module.buffers()) if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def check_model(modules: dict[str, torch.nn.Module], epoch: int, run_dir: Path, saved_epoch: int) -> None:
    """Never save a model holding NaN/inf (a finite loss can still precede non-finite weights)."""
    for name, module in modules.items():
        if not module_finite(module):
            raise TrainingDiverged(f"training diverged in epoch {epoch}: the {name}'s weights are not finite; "
                                   + _kept(run_dir, saved_epoch) + "; retry with a lower --lr / --lr-d or --adv-weight")


def _kept(run_dir: Path, saved_epoch: int) -> str:
    if saved_epoch:
        return f"nothing was saved from it, {run_dir / 'weights'} holds the last good epoch ({saved_epoch})"
    return f"nothing was saved in {run_dir}"


@dataclass
class RunGuard:
    """What the engine has reached, so an interrupt can say how to continue."""

    run_dir: Optional[Path] = None
    epoch: int = 0  # the epoch being trained (1-based)
    saved_epoch: int = 0  # the epoch weights/last.pt holds

    def interrupted_message(self) -> str:
        if self.run_dir is None:
            return "interrupted before training started; nothing was written"
        if not self.saved_epoch:
            return (f"interrupted during epoch {self.epoch} before any epoch finished; nothing to resume in "
                    f"{self.run_dir}; start the run again")
        return (f"interrupted during epoch {self.epoch}; {self.run_dir / 'weights' / 'last.pt'} holds epoch "
                f"{self.saved_epoch}; continue with `segcli train --resume {self.run_dir}`")

    @contextmanager
    def saving(self) -> Iterator[None]:
        """Hold Ctrl-C while one epoch's files are written, so they always agree with each other."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        pending: list[Any] = []
        previous = signal.signal(signal.SIGINT, lambda sig, frame: pending.append(sig))
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
        if pending:
            raise KeyboardInterrupt


@contextmanager
def interrupt_guard() -> Iterator[RunGuard]:
    """Turn Ctrl-C into an Interrupted error naming the run and how to resume it."""
    guard = RunGuard()
    try:
        yield guard
    except KeyboardInterrupt:
        raise Interrupted(guard.interrupted_message()) from None
