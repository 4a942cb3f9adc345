"""Guards for long training runs: option checks up front, divergence detection, and Ctrl-C
handled at safe points so a run can always be resumed.

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

from segcli.config import GAN_MODES, PRECISIONS, ModelConfig, TrainConfig
from segcli.errors import Interrupted, TrainingDiverged, UserError

# Widest U-Net stage allowed: base_channels * 2**depth. 4096 is far beyond useful and still fits
# in memory; without a cap a typo like --depth 12 allocates tens of GB before saying anything.
MAX_WIDTH = 4096


def _number(name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        rng = f"{bound}" + (f" and <= {high:g}" if math.isfinite(high) else "")
        raise UserError(f"--{name.replace('_', '-')} {value}: must be a number {rng}")


def check_train_options(cfg: TrainConfig, mcfg: ModelConfig) -> None:
    """Reject option values that would fail (or silently misbehave) later, before the data scan."""
    from segcli.models import DISCRIMINATORS, ENCODERS, lookup

    if cfg.gan not in GAN_MODES:
        raise UserError(f"--gan '{cfg.gan}': expected lsgan, vanilla, hinge or none")
    if str(cfg.precision).lower() not in PRECISIONS:
        raise UserError(f"--precision '{cfg.precision}': expected auto, 32, bf16 or 16")
    for name in ("epochs", "batch_size", "patience"):  # 0 = automatic / off
        _number(name, getattr(cfg, name), 0)
    _number("workers", cfg.workers, -1)  # -1 = automatic
    _number("d_every", cfg.d_every, 1)
    _number("adv_warmup", cfg.adv_warmup, -1)  # -1 = automatic
    _number("semi_start", cfg.semi_start, -1)  # negative = automatic
    if not isinstance(cfg.img_size, int) or (cfg.img_size != 0 and not 8 <= cfg.img_size <= 8192):
        raise UserError(f"--img-size {cfg.img_size}: use 0 (from the data) or a patch size from 8 to 8192")
    _number("val_split", cfg.val_split, 0, 0.99)
    _number("lr", cfg.lr_g, 0, 10, low_open=True)
    _number("lr_d", cfg.lr_d, 0, 10, low_open=True)
    _number("adv_weight", cfg.adv_weight, 0)
    _number("weight_decay", cfg.weight_decay, 0)
    _number("label_smoothing", cfg.label_smoothing, 0, 0.5)
    _number("onehot_tau", cfg.onehot_tau, 0, 1, low_open=True)
    if cfg.ignore_index is not None:
        _number("ignore_index", cfg.ignore_index, 0, 65535)
    _number("depth", mcfg.depth, 1, 8)
    _number("base_channels", mcfg.base_channels, 1, 1024)
    _number("disc_channels", mcfg.disc_channels, 1, 1024)
    if mcfg.base_channels * 2**mcfg.depth > MAX_WIDTH:
        raise UserError(
            f"--base-channels {mcfg.base_channels} with --depth {mcfg.depth} gives {mcfg.base_channels * 2**mcfg.depth} "
            f"channels at the bottom of the U-Net (at most {MAX_WIDTH}); lower one of them"
        )
    if cfg.unlabeled and not Path(cfg.unlabeled).is_dir():
        raise UserError(f"--unlabeled {cfg.unlabeled}: folder not found; pass a folder of images without masks")
    if mcfg.encoder != "auto":
        lookup(ENCODERS, mcfg.encoder, "encoder")
    lookup(DISCRIMINATORS, mcfg.discriminator, "discriminator")


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


def check_model(gen: torch.nn.Module, disc: Optional[torch.nn.Module], epoch: int, run_dir: Path,
                saved_epoch: int) -> None:
    """Never save a model holding NaN/inf (a finite loss can still precede non-finite weights)."""
    for name, module in (("generator", gen), ("discriminator", disc)):
        if module is not None and not module_finite(module):
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
