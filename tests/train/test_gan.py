"""Losses, the GAN step and the schedule's ramp."""

from __future__ import annotations

import math
import pytest
import torch

from segcli.config import DataInfo, ModelConfig
from segcli.data import IGNORE
from segcli.models import build_discriminator, build_generator, class_probabilities
from segcli.train.gan import StepSettings, real_mask, train_step
from segcli.train.losses import adversarial_loss, segmentation_loss


def test_segmentation_loss_respects_ignore() -> None:
    logits = torch.randn(2, 3, 8, 8)
    labels = torch.randint(0, 3, (2, 8, 8))
    ignored = labels.clone()
    ignored[:, :4] = IGNORE
    a = segmentation_loss(logits, ignored)
    changed = logits.clone()
    changed[:, :, :4] += 10 * torch.randn_like(changed[:, :, :4])  # only ignored pixels change
    assert torch.allclose(a, segmentation_loss(changed, ignored))
    assert torch.isfinite(segmentation_loss(logits[:, :1], labels.clamp(max=1)))


@pytest.mark.parametrize("mode", ["lsgan", "vanilla", "hinge"])
def test_adversarial_losses_order_real_and_fake(mode: str) -> None:
    good, bad = torch.full((4, 1), 1.0), torch.full((4, 1), 0.0)
    assert adversarial_loss(good, True, mode) < adversarial_loss(bad, True, mode)
    assert adversarial_loss(bad, False, mode) < adversarial_loss(good, False, mode)


def test_scaled_onehot_is_not_trivially_separable() -> None:
    labels = torch.randint(0, 3, (1, 6, 6))
    fake = torch.softmax(torch.randn(1, 3, 6, 6), 1)
    real = real_mask(labels, fake, tau=0.9)
    assert torch.allclose(real.sum(1), torch.ones(1, 6, 6), atol=1e-5)
    true_p = real.gather(1, labels.unsqueeze(1))
    assert (true_p >= 0.9 - 1e-6).all() and (true_p < 1).any()
    assert (real > 0).all()  # soft everywhere, like the generator's output


@pytest.mark.parametrize("gan", ["lsgan", "vanilla", "hinge", "none"])
def test_train_step_updates_g_and_only_d_in_d_step(gan: str) -> None:
    torch.manual_seed(0)
    info = DataInfo(num_classes=3, in_channels=1, binary=False)
    cfg = ModelConfig(base_channels=4, depth=2, disc_channels=8)
    g, d = build_generator(cfg, info), build_discriminator(cfg, info)
    opt_g = torch.optim.Adam(g.parameters(), 1e-2)
    opt_d = torch.optim.Adam(d.parameters(), 1e-2)
    x, y = torch.randn(2, 1, 32, 32), torch.randint(0, 3, (2, 32, 32))
    g0 = [p.clone() for p in g.parameters()]
    d0 = [p.clone() for p in d.parameters()]
    losses = train_step(g, d if gan != "none" else None, opt_g, opt_d, x, y, StepSettings(gan=gan), 0.1)
    assert all(torch.isfinite(v) for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(g0, g.parameters()))
    d_changed = any(not torch.equal(a, b) for a, b in zip(d0, d.parameters()))
    assert d_changed == (gan != "none")
    assert ("d_loss" in losses) == (gan != "none")
    assert all(p.requires_grad for p in d.parameters())  # D unfrozen after the G step


def test_class_probabilities_of_a_binary_head_have_two_channels() -> None:
    p = class_probabilities(torch.zeros(1, 1, 2, 2))
    assert p.shape == (1, 2, 2, 2) and math.isclose(float(p.sum(1).mean()), 1.0)


def test_ramp_by_epochs_or_over_the_first_quarter_of_the_run() -> None:
    from segcli.train.schedule import ramp

    assert ramp(0, 0.0, 0.0) == 1.0  # no warm-up
    assert ramp(4, 1.0, 0.9) == 0.25 and ramp(4, 6.0, 0.1) == 1.0  # epochs: progress does not matter
    assert ramp(-1, 50.0, 0.125) == 0.5 and ramp(-1, 0.0, 0.3) == 1.0  # auto: a quarter of the run
