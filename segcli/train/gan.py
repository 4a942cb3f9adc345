"""One adversarial training step as explicit functions: tensors in, a dict of losses out.

Order per batch (pix2pix): the generator's forward pass, then a discriminator step on the
detached fake, then a generator step through the frozen discriminator.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from segcli.data.io import IGNORE
from segcli.models import class_probabilities
from segcli.train.frozen import frozen
from segcli.train.losses import adversarial_loss, generator_adv_loss, one_hot, segmentation_loss

Autocast = Callable[[], AbstractContextManager]
# The semi-supervised loss of an unlabeled batch and its logged parts, computed on demand
UnlabeledTerm = Callable[[], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass
class StepSettings:
    gan: str = "lsgan"  # lsgan | vanilla | hinge | none
    adv_weight: float = 0.01
    label_smoothing: float = 0.1
    onehot_tau: float = 0.9
    class_weights: Optional[list[float]] = None  # per class, in the segmentation loss
    focal_gamma: float = 0.0  # > 0: focal CE
    # DDP: autograd-aware sum over processes; the segmentation loss is then the global batch's
    batch_sum: Optional[Callable[[torch.Tensor], torch.Tensor]] = None


def real_mask(labels: torch.Tensor, fake: torch.Tensor, tau: float) -> torch.Tensor:
    """The truth as D sees it: a one-hot map scaled towards the generator's output (Luc et al. 2016).

    The true class gets max(tau, p_true) and the others share the rest in the generator's
    proportions, so D cannot tell real from fake by 'exactly 0/1' alone. Ignored pixels show
    the generator's own probabilities, which carry no signal either way.
    """
    k = fake.shape[1]
    valid = (labels != IGNORE).unsqueeze(1)
    oh = one_hot(labels, k)
    p_true = (fake * oh).sum(1, keepdim=True)
    y_true = torch.clamp(p_true, min=tau)
    rest = fake * (1 - y_true) / (1 - p_true).clamp(min=1e-6)
    scaled = oh * y_true + (1 - oh) * rest
    return torch.where(valid, scaled, fake)


def _step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler]) -> None:
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()


def discriminator_step(
    disc: nn.Module,
    opt: torch.optim.Optimizer,
    image: torch.Tensor,
    labels: torch.Tensor,
    fake: torch.Tensor,
    s: StepSettings,
    autocast: Autocast = nullcontext,
    scaler: Optional[torch.amp.GradScaler] = None,
) -> dict[str, torch.Tensor]:
    """Update D on (image, truth) vs (image, detached generator probabilities)."""
    fake = fake.detach()
    real = real_mask(labels, fake, s.onehot_tau)
    opt.zero_grad(set_to_none=True)
    with autocast():
        # one pass over real and fake together: same kernels, half the launches
        pred = disc(torch.cat([torch.cat([image, real], 1), torch.cat([image, fake], 1)], 0))
    pred_real, pred_fake = pred.float().chunk(2, dim=0)
    loss = 0.5 * (
        adversarial_loss(pred_real, True, s.gan, 1.0 - s.label_smoothing)
        + adversarial_loss(pred_fake, False, s.gan)
    )
    _step(loss, opt, scaler)
    return {"d_loss": loss.detach(), "d_real": pred_real.mean().detach(), "d_fake": pred_fake.mean().detach()}


def generator_step(
    disc: Optional[nn.Module],
    opt: torch.optim.Optimizer,
    image: torch.Tensor,
    logits: torch.Tensor,
    labels: torch.Tensor,
    s: StepSettings,
    adv_weight: float,
    autocast: Autocast = nullcontext,
    scaler: Optional[torch.amp.GradScaler] = None,
    extra: Optional[torch.Tensor] = None,
) -> dict[str, torch.Tensor]:
    """Update G on segmentation loss + adv_weight * adversarial loss through a frozen D.

    `extra` is any further loss term of this step (the unlabeled batch's, in semi-supervised mode).
    """
    weights = torch.tensor(s.class_weights, device=logits.device) if s.class_weights else None
    seg = segmentation_loss(logits, labels, s.batch_sum, weights, s.focal_gamma)
    loss = seg if extra is None else seg + extra
    out = {"g_seg": seg.detach()}
    if disc is not None and s.gan != "none" and adv_weight > 0:
        # under DDP call the bare D: it is frozen here, and a DDP pass would expect its gradients
        disc = getattr(disc, "module", disc)
        with frozen(disc), autocast():
            pred = disc(torch.cat([image, class_probabilities(logits.float())], 1))
        adv = generator_adv_loss(pred, s.gan)
        loss = loss + adv_weight * adv
        out["g_adv"] = adv.detach()
    opt.zero_grad(set_to_none=True)
    _step(loss, opt, scaler)
    out["g_loss"] = loss.detach()
    return out


def train_step(
    gen: nn.Module,
    disc: Optional[nn.Module],
    opt_g: torch.optim.Optimizer,
    opt_d: Optional[torch.optim.Optimizer],
    image: torch.Tensor,
    labels: torch.Tensor,
    s: StepSettings,
    adv_weight: float,
    autocast: Autocast = nullcontext,
    scalers: tuple[Optional[torch.amp.GradScaler], Optional[torch.amp.GradScaler]] = (None, None),
    unlabeled: Optional[UnlabeledTerm] = None,
    estimator: Optional[Callable[[torch.Tensor, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]] = None,
) -> dict[str, torch.Tensor]:
    """G forward, D step on the detached fake, G step with D frozen; then, given an `estimator`
    step, the quality estimator's update on (image, G's detached logits, labels), which leaves G's
    update as it would be without it.

    `unlabeled` computes the semi-supervised loss of an unlabeled batch (segcli.train.consistency,
    segcli.train.semi): G runs a separate pass over that batch (one pass over both batches shares
    BatchNorm statistics between them, which cost 0.11 ISBI test mIoU); D learns from the
    labelled pairs only.
    """
    with autocast():
        logits = gen(image)
    losses: dict[str, torch.Tensor] = {}
    if disc is not None and opt_d is not None and s.gan != "none":
        fake = class_probabilities(logits.float())
        losses.update(discriminator_step(disc, opt_d, image, labels, fake, s, autocast, scalers[1]))
    extra = None
    if unlabeled is not None:
        extra, semi_out = unlabeled()
        losses.update(semi_out)
    losses.update(generator_step(disc, opt_g, image, logits, labels, s, adv_weight, autocast, scalers[0], extra))
    if estimator is not None:
        losses.update(estimator(image, logits.detach(), labels))
    return losses
