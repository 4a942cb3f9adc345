"""What hooks into the training loop beside the generator's own step: one small protocol.

The loop (segcli.train.engine) knows G, its optimizer and a list of parts. Per step each part may
update its own networks from G's detached prediction (`update`), add a weighted term to G's loss
(`generator_term`) and follow G's new weights (`after_step`); per run it saves and restores its
state with the checkpoint, reacts to validation, and finishes (the judge calibrates). The
discriminators, the quality judge, the weights' moving average and the unlabeled images are parts
(segcli.train.adversary, .ema, .unlabeled), so the loop holds no branch on which ones a run has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

from segcli.checkpoint import Checkpoint
from segcli.train.distributed import Context


Losses = dict[str, torch.Tensor]
Run = Any  # segcli.train.state.Run (which holds the parts: named here, not imported)


@dataclass(frozen=True)
class Step:
    """One training step as the parts see it."""

    index: int  # global step count, from 0 (a resumed run counts on)
    epoch: int
    image: torch.Tensor  # the labelled crops (normalised)
    labels: torch.Tensor
    logits: torch.Tensor  # G's prediction, still in G's graph (detach it to learn from it)
    adv_weight: float  # the adversarial weight, ramped in over the warm-up
    gan_now: bool  # a D step: every --d-every-th step
    # what a part's update computed for its own generator term on this step (the flaw D's inputs)
    shared: dict[str, Any] = field(default_factory=dict)


class Part:
    """A no-op part; subclasses override what they need."""

    def modules(self) -> dict[str, nn.Module]:
        """Named networks (checked for non-finite weights after each epoch)."""
        return {}

    def distribute(self, ctx: Context) -> None:
        """Wrap the part's trained networks for torchrun (after any resumed weights are loaded)."""

    def wrap_step(self, wrap: Callable[[nn.Module], Any]) -> None:
        """Wrap the modules the part's own step runs (torch.compile: segcli.train.compile)."""

    def set_progress(self, progress: float) -> None:
        """Called before each step with the run's progress (0..1): learning-rate schedules."""

    def start_epoch(self, epoch: int) -> None:
        """Called before an epoch's first step."""

    def update(self, step: Step) -> Losses:
        """Train the part's own networks on this step (G's logits detached); their losses."""
        return {}

    def generator_term(self, step: Step, gen: nn.Module) -> tuple[Optional[torch.Tensor], Losses]:
        """A weighted term for G's loss on this step (None: none) and the losses to log."""
        return None, {}

    def after_step(self, gen: nn.Module) -> None:
        """Called after G's optimizer step."""

    def state(self, last: bool) -> dict[str, Any]:
        """Checkpoint fields (segcli.checkpoint.Checkpoint); `last`: also what resuming needs."""
        return {}

    def restore(self, ckpt: Checkpoint, run: Run) -> None:
        """Continue from a last.pt (the run's weights and history are restored already)."""

    def warm_start(self, ckpt: Checkpoint) -> list[str]:
        """--init: load the part's networks from another run's checkpoint where they fit (weights
        only); the names of those loaded."""
        return []

    def after_validation(self, run: Run, epoch: int, fit: float, improved: bool) -> bool:
        """React to a validation; True restarts --patience."""
        return False

    def epoch_columns(self) -> dict[str, Any]:
        """Values for the epoch's row of metrics.csv."""
        return {}

    def ready_to_stop(self) -> bool:
        """False while early stopping should wait (the unlabeled images have not joined yet)."""
        return True

    def finish(self, run: Run) -> None:
        """At the end of the run, on every process (rank 0 writes)."""

    def summary(self) -> str:
        """One line for the run's summary, or ''."""
        return ""
