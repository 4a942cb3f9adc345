"""Class weights and the weighted / focal segmentation losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segcli.data import IGNORE
from segcli.data.balance import auto_class_weights
from segcli.models import class_probabilities
from segcli.train.losses import dice_loss, segmentation_loss


def test_auto_weights_are_smoothed_inverse_frequency() -> None:
    w = auto_class_weights([900, 90, 10, 0])
    assert w[0] < w[1] < w[2] and w[3] == w[2]  # rarer -> heavier; absent -> the largest
    assert abs(w[2] / w[0] - 90 ** 0.5) < 2e-2  # sqrt(900/10) = 9.5, not 90
    assert abs(sum(w) / len(w) - 1) < 1e-3


def test_weighted_and_focal_losses() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[:, :2] = IGNORE
    w = torch.tensor([0.5, 1.0, 3.0])
    dice = dice_loss(class_probabilities(logits), labels)
    ce_w = F.cross_entropy(logits, labels, weight=w, ignore_index=IGNORE)
    assert torch.allclose(segmentation_loss(logits, labels, class_weights=w), ce_w + dice, atol=1e-6)
    # uniform weights and gamma 0 = the plain loss
    assert torch.allclose(segmentation_loss(logits, labels, class_weights=torch.ones(3)), segmentation_loss(logits, labels), atol=1e-6)
    assert segmentation_loss(logits, labels, focal_gamma=2.0) < segmentation_loss(logits, labels)  # focal shrinks CE
    binary = torch.randn(2, 1, 8, 8)
    blabels = torch.randint(0, 2, (2, 8, 8))
    up = segmentation_loss(binary, blabels, class_weights=torch.tensor([1.0, 5.0]))
    assert torch.isfinite(up) and not torch.allclose(up, segmentation_loss(binary, blabels))
