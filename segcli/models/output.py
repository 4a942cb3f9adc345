"""What a generator's output means: its activation, how probabilities become labels, and the
input size multiple it needs. The generator owns one (`Generator.output`); checkpoints and
exported files carry it, so every reader decodes outputs the same way.

torch-free at import: the ONNX Runtime path uses the numpy half.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class OutputSpec:
    """Binary models: one logit, sigmoid, foreground where p > threshold. Multi-class: K logits,
    softmax, label = argmax. Inputs must be padded to a multiple of `size_multiple`."""

    binary: bool
    num_classes: int
    size_multiple: int

    @property
    def activation(self) -> str:
        return "sigmoid" if self.binary else "softmax"

    @property
    def channels(self) -> int:
        """Channels of the logits and of `probabilities`: 1 for binary, else K."""
        return 1 if self.binary else self.num_classes

    def padding(self, h: int, w: int) -> tuple[int, int]:
        """Rows and columns to add at the bottom/right so that both sides are multiples."""
        m = self.size_multiple
        return (-h) % m, (-w) % m

    # torch tensors (imported lazily: this module stays importable without torch)
    def probabilities(self, logits: Any) -> Any:
        """(N, C', H, W): the sigmoid foreground probability, or the softmax over K classes."""
        return logits.sigmoid() if self.binary else logits.softmax(1)

    def labels(self, logits: Any, threshold: float = 0.5) -> Any:
        """(N, H, W) int64 class indices."""
        if self.binary:
            return (logits[:, 0].sigmoid() > threshold).long()
        return logits.argmax(1)

    # numpy arrays
    def labels_from_probs(self, probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """Probabilities (C', H, W) as `probabilities` gives them to HxW uint8 labels."""
        if self.binary:
            return (probs[0] > threshold).astype(np.uint8)
        return probs.argmax(0).astype(np.uint8)


def class_probabilities(logits: Any) -> Any:
    """(N, K, H, W) per-class probabilities whatever the head: [1 - p, p] for a binary one.

    What the discriminator sees and what Dice is computed on.
    """
    import torch

    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return logits.softmax(dim=1)
