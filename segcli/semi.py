"""Semi-supervised adversarial terms for unlabeled images (Hung et al. 2018, AdvSemiSeg).

On an unlabeled batch the generator gets (1) the adversarial loss: make D believe its
prediction is a real mask, and (2) after a warm-up, a self-training cross-entropy towards its
own argmax on the pixels where D's per-pixel confidence exceeds a threshold. D itself is
trained on labeled pairs only, so its confidence means "looks like a real mask".
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from segcli.data.io import IGNORE
from segcli.losses import cross_entropy, generator_adv_loss, probabilities


@dataclass
class SemiSettings:
    threshold: float = 0.2  # D confidence above which a pixel becomes a pseudo-label (paper: 0.2)
    weight: float = 0.1  # self-training CE weight (paper: lambda_semi = 0.1)
    adv_weight: float = 0.001  # adversarial weight on unlabeled images (paper: 0.001)


def confidence(pred: torch.Tensor, mode: str, size: tuple[int, int]) -> torch.Tensor:
    """D's scores as a [0, 1] 'real' confidence map at the image's resolution."""
    conf = pred.clamp(0, 1) if mode == "lsgan" else torch.sigmoid(pred)
    if conf.dim() == 2:  # a global D: one score per image
        conf = conf[:, :, None, None]
    return F.interpolate(conf, size=size, mode="bilinear", align_corners=False)[:, 0]


def unlabeled_terms(
    disc: nn.Module, image: torch.Tensor, logits: torch.Tensor, mode: str, s: SemiSettings,
    self_training: bool, autocast=nullcontext,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The generator's extra loss on an unlabeled batch, and what it measured."""
    from segcli.gan import frozen

    probs = probabilities(logits.float())
    disc = getattr(disc, "module", disc)  # bare D under DDP: it is frozen here
    with frozen(disc), autocast():
        pred = disc(torch.cat([image, probs], 1))
    pred = pred.float()
    adv = generator_adv_loss(pred, mode)
    conf = confidence(pred.detach(), mode, tuple(image.shape[-2:]))
    use = conf > s.threshold
    loss = s.adv_weight * adv
    out = {"semi_adv": adv.detach(), "semi_pixels": use.float().mean() if self_training else torch.zeros(())}
    if self_training:
        pseudo = probs.detach().argmax(1)
        pseudo = torch.where(use, pseudo, torch.full_like(pseudo, IGNORE))
        ce = cross_entropy(logits, pseudo)
        loss = loss + s.weight * ce
        out["semi_ce"] = ce.detach()
    return loss, out
