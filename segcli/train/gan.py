"""The adversarial step as explicit functions: tensors in, a dict of losses (or a loss) out.

Order per batch (pix2pix): the generator's forward pass, then a discriminator step on the
detached prediction, then a generator step whose extra terms come through the frozen discriminator.
Two discriminators: the seed's real/fake D (`discriminator_step`, `adversarial_term`) and the flaw
detector (`flaw_step`, `flaw_term`: D learns where G's label is wrong and G learns to lower that).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from segcli.data.io import IGNORE
from segcli.models import OutputSpec, class_probabilities
from segcli.train.frozen import frozen
from segcli.train.losses import adversarial_loss, generator_adv_loss, one_hot, segmentation_loss

Autocast = Callable[[], AbstractContextManager]


@dataclass
class StepSettings:
    gan: str = "flaw"  # flaw | lsgan | vanilla | hinge | none
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


def adam(params: Iterable[nn.Parameter], decoupled: bool = True, **kw: Any) -> torch.optim.Optimizer:
    """AdamW (`decoupled=False`: Adam) with torch's fused kernel where it has one for these
    parameters (the CPU since torch 2.4, CUDA): one kernel over every tensor instead of a loop over
    them, half the optimizer's time on a 2-core CPU (`benchmarks/train_levers.py`)."""
    params = list(params)
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    try:
        return cls(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):  # an older torch, or a device without the kernel
        return cls(params, **kw)


def optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler]) -> None:
    opt.zero_grad(set_to_none=True)
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
    """Update the real/fake D on (image, truth) vs (image, detached generator probabilities)."""
    fake = fake.detach()
    real = real_mask(labels, fake, s.onehot_tau)
    with autocast():
        # one pass over real and fake together: same kernels, half the launches
        pred = disc(torch.cat([torch.cat([image, real], 1), torch.cat([image, fake], 1)], 0))
    pred_real, pred_fake = pred.float().chunk(2, dim=0)
    loss = 0.5 * (
        adversarial_loss(pred_real, True, s.gan, 1.0 - s.label_smoothing)
        + adversarial_loss(pred_fake, False, s.gan)
    )
    optimizer_step(loss, opt, scaler)
    return {"d_loss": loss.detach(), "d_real": pred_real.mean().detach(), "d_fake": pred_fake.mean().detach()}


def adversarial_term(disc: nn.Module, image: torch.Tensor, logits: torch.Tensor, gan: str,
                     autocast: Autocast = nullcontext) -> torch.Tensor:
    """G's real/fake loss: make the frozen D score (image, G's probabilities) as real."""
    disc = getattr(disc, "module", disc)  # the bare D under DDP: it is frozen here, no gradients to reduce
    with frozen(disc), autocast():
        pred = disc(torch.cat([image, class_probabilities(logits.float())], 1))
    return generator_adv_loss(pred.float(), gan)


def flaw_target(logits: torch.Tensor, labels: torch.Tensor, output: OutputSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """What the flaw detector learns: 1 where G's label is wrong, 0 where right; and where that is
    known (1: a labelled pixel, 0: an ignored one)."""
    wrong = (output.labels(logits.detach().float()) != labels).float()
    return wrong, (labels != IGNORE).float()


FlawInputs = tuple[torch.Tensor, torch.Tensor]  # ErrorEstimator.inputs: its stacked input and statistics


def flaw_inputs(net: nn.Module, image: torch.Tensor, logits: torch.Tensor, output: OutputSpec,
                autocast: Autocast = nullcontext) -> FlawInputs:
    """The flaw detector's inputs from G's prediction, in G's graph: computed once on a D step, they
    serve D's update (detached) and G's term (the same values either way; a tenth of the D pair's time)."""
    net = getattr(net, "module", net)
    with autocast():
        return net.inputs(image, output.probabilities(logits.float()))


def flaw_step(net: nn.Module, opt: torch.optim.Optimizer, image: torch.Tensor, logits: torch.Tensor,
              labels: torch.Tensor, output: OutputSpec, autocast: Autocast = nullcontext,
              scaler: Optional[torch.amp.GradScaler] = None, key: str = "d_loss",
              inputs: Optional[FlawInputs] = None) -> dict[str, torch.Tensor]:
    """Update the flaw detector on (image, G's detached probabilities) towards the true error map
    (binary cross-entropy over the labelled pixels). It never touches G's graph."""
    logits = logits.detach().float()
    wrong, valid = flaw_target(logits, labels, output)
    net.train()
    with autocast():
        if inputs is None:
            logit = net(image, output.probabilities(logits))
        else:
            logit = net(image, None, inputs=(inputs[0].detach(), inputs[1].detach()))
    bce = F.binary_cross_entropy_with_logits(logit.float()[:, 0], wrong, reduction="none")
    loss = (bce * valid).sum() / valid.sum().clamp(min=1.0)  # every process steps, even on an all-ignored crop
    optimizer_step(loss, opt, scaler)
    return {key: loss.detach()}


def flaw_term(net: nn.Module, image: torch.Tensor, logits: torch.Tensor, output: OutputSpec,
              autocast: Autocast = nullcontext, inputs: Optional[FlawInputs] = None) -> torch.Tensor:
    """G's flaw correction (Ke et al. 2020): the mean squared error probability the frozen flaw
    detector sees in G's own prediction; the gradient reaches G through its probabilities only
    (`inputs`: flaw_inputs of these logits, already computed)."""
    net = getattr(net, "module", net)
    with frozen(net), autocast():
        if inputs is None:
            err = torch.sigmoid(net(image, output.probabilities(logits.float())).float())
        else:
            err = torch.sigmoid(net(image, None, inputs=inputs).float())
    return (err * err).mean()


def generator_step(opt: torch.optim.Optimizer, logits: torch.Tensor, labels: torch.Tensor, s: StepSettings,
                   terms: list[torch.Tensor], scaler: Optional[torch.amp.GradScaler] = None) -> dict[str, torch.Tensor]:
    """Update G on its segmentation loss plus the weighted `terms` the run's parts gave for this step."""
    weights = torch.tensor(s.class_weights, device=logits.device) if s.class_weights else None
    seg = segmentation_loss(logits, labels, s.batch_sum, weights, s.focal_gamma)
    loss = seg + sum(terms) if terms else seg
    optimizer_step(loss, opt, scaler)
    return {"g_seg": seg.detach(), "g_loss": loss.detach()}
