"""What a training run tells the outside world: progress displays and experiment loggers.

The engine calls these on the main process only and never prints itself. Subclass
`Callbacks` and override what you need; `CallbackList` fans one event out to several.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

# (image HxWxC as decoded, true labels HxW, predicted labels HxW) of a validation image
Sample = tuple[np.ndarray, np.ndarray, np.ndarray]


class Callbacks:
    """No-op hooks, in the order a run calls them."""

    def on_start(self, info: dict[str, Any]) -> None:
        """Run folder, device, data sizes, and `config`: the resolved {train, model, data_info} dicts."""

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...

    def on_step(self, step: int, losses: dict[str, float]) -> None:
        """Running mean losses, every 10 steps and at the epoch's last."""

    def on_validation(self, epoch: int, samples: Sequence[Sample]) -> None:
        """After each validation: the first validation images with their true and predicted masks."""

    def on_epoch_end(self, row: dict[str, Any]) -> None:
        """The epoch's metrics.csv row (losses, validation metrics, learning rates, seconds)."""

    def on_finish(self, result: Any) -> None:
        """The run's TrainResult, once its files are written."""

    def on_note(self, text: str) -> None:
        """Something the user should know that does not stop the run (e.g. a compilation fallback)."""


class CallbackList(Callbacks):
    def __init__(self, callbacks: Sequence[Callbacks]) -> None:
        self.callbacks = list(callbacks)

    def on_start(self, info: dict[str, Any]) -> None:
        for c in self.callbacks:
            c.on_start(info)

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        for c in self.callbacks:
            c.on_epoch_start(epoch, epochs, steps)

    def on_step(self, step: int, losses: dict[str, float]) -> None:
        for c in self.callbacks:
            c.on_step(step, losses)

    def on_validation(self, epoch: int, samples: Sequence[Sample]) -> None:
        for c in self.callbacks:
            c.on_validation(epoch, samples)

    def on_epoch_end(self, row: dict[str, Any]) -> None:
        for c in self.callbacks:
            c.on_epoch_end(row)

    def on_finish(self, result: Any) -> None:
        for c in self.callbacks:
            c.on_finish(result)

    def on_note(self, text: str) -> None:
        for c in self.callbacks:
            c.on_note(text)
