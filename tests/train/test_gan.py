"""Losses, the GAN step and the schedule's ramp."""

from __future__ import annotations

import math
import pytest
import torch

from segcli.config import DataInfo, ModelConfig
from segcli.data import IGNORE
from segcli.models import build_discriminator, build_generator, class_probabilities
from segcli.models import OutputSpec
from segcli.models.estimator import build_estimator
from segcli.train.gan import (StepSettings, adam, adversarial_term, discriminator_step, flaw_inputs, flaw_step, flaw_target,
                              flaw_term, generator_step, real_mask)
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


def _changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


@pytest.mark.parametrize("gan", ["lsgan", "vanilla", "hinge", "none"])
def test_real_fake_step_updates_g_and_only_d_in_d_step(gan: str) -> None:
    torch.manual_seed(0)
    info = DataInfo(num_classes=3, in_channels=1, binary=False)
    cfg = ModelConfig(base_channels=4, depth=2, disc_channels=8)
    g, d = build_generator(cfg, info), build_discriminator(cfg, info)
    opt_g = torch.optim.Adam(g.parameters(), 1e-2)
    opt_d = torch.optim.Adam(d.parameters(), 1e-2)
    x, y = torch.randn(2, 1, 32, 32), torch.randint(0, 3, (2, 32, 32))
    g0, d0 = [p.clone() for p in g.parameters()], [p.clone() for p in d.parameters()]
    logits = g(x)
    losses, terms = {}, []
    if gan != "none":
        losses.update(discriminator_step(d, opt_d, x, y, class_probabilities(logits.detach()), StepSettings(gan=gan)))
        d1 = [p.clone() for p in d.parameters()]
        terms.append(0.1 * adversarial_term(d, x, logits, gan))
    losses.update(generator_step(opt_g, logits, y, StepSettings(gan=gan), terms))
    assert all(torch.isfinite(v) for v in losses.values())
    assert _changed(g0, g) and _changed(d0, d) == (gan != "none") and ("d_loss" in losses) == (gan != "none")
    if gan != "none":
        assert not _changed(d1, d)  # G's step leaves D as its own step left it
    assert all(p.requires_grad for p in d.parameters())  # D unfrozen after the G step


def test_flaw_target_is_the_true_error_map() -> None:
    """A hand-made batch: G's labels against the truth, ignored pixels out."""
    out = OutputSpec(False, 3, 4)
    logits = torch.zeros(1, 3, 2, 3)
    predicted = torch.tensor([[0, 1, 2], [2, 1, 0]])  # G's argmax
    logits[0].scatter_(0, predicted[None], 5.0)
    truth = torch.tensor([[[0, 2, 2], [IGNORE, 1, 1]]])
    wrong, valid = flaw_target(logits, truth, out)
    assert wrong.tolist() == [[[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]]  # (1, 0) is wrong but ignored:
    assert valid.tolist() == [[[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]]]  # left out by the mask

    binary = OutputSpec(True, 2, 4)  # one logit per pixel, threshold 0.5
    wrong, _ = flaw_target(torch.tensor([[[[3.0, -3.0]]]]), torch.tensor([[[1, 1]]]), binary)
    assert wrong.tolist() == [[[0.0, 1.0]]]


def test_flaw_d_learns_the_error_map_and_g_learns_through_a_frozen_d() -> None:
    torch.manual_seed(0)
    info = DataInfo(num_classes=3, in_channels=1, binary=False)
    g = build_generator(ModelConfig(base_channels=4, depth=2), info)
    d = build_estimator(1, 3, False, 8)
    opt_g, opt_d = torch.optim.Adam(g.parameters(), 1e-2), torch.optim.AdamW(d.parameters(), 1e-2)
    x, y = torch.randn(2, 1, 32, 32), torch.randint(0, 3, (2, 32, 32))
    g0, d0 = [p.clone() for p in g.parameters()], [p.clone() for p in d.parameters()]
    logits = g(x)
    out = flaw_step(d, opt_d, x, logits, y, g.output)  # D's step: G's logits detached
    assert torch.isfinite(out["d_loss"]) and _changed(d0, d) and not _changed(g0, g)
    assert all(p.grad is None for p in g.parameters())  # nothing reached G's graph
    d1 = [p.clone() for p in d.parameters()]
    opt_d.zero_grad(set_to_none=True)
    fc = flaw_term(d, x, logits, g.output)
    assert 0.0 < float(fc.detach()) < 1.0
    generator_step(opt_g, logits, y, StepSettings(), [0.5 * fc])
    assert all(p.grad is None for p in d.parameters()) and not _changed(d1, d)  # D fixed in G's step
    assert _changed(g0, g) and all(p.requires_grad for p in d.parameters())
    # the term alone moves G: its gradient reaches G's weights through the probabilities
    g.zero_grad(set_to_none=True)
    flaw_term(d, x, g(x), g.output).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())


@pytest.mark.parametrize("binary", [True, False])
def test_flaw_inputs_computed_once_give_the_same_update_and_term(binary: bool) -> None:
    """Training computes D's inputs once for D's update and G's term: bit for bit what two passes give."""
    import copy

    k = 2 if binary else 3
    info = DataInfo(num_classes=k, in_channels=1, binary=binary)
    torch.manual_seed(0)
    g, d = build_generator(ModelConfig(base_channels=4, depth=2), info), build_estimator(1, k, binary, 8)
    x, y = torch.randn(2, 1, 32, 32), torch.randint(0, k, (2, 32, 32))
    results = []
    for shared in (False, True):
        gs, ds = copy.deepcopy(g), copy.deepcopy(d)
        opt_d = torch.optim.AdamW(ds.parameters(), 1e-2)
        logits = gs(x)
        inputs = flaw_inputs(ds, x, logits, gs.output) if shared else None
        loss = flaw_step(ds, opt_d, x, logits, y, gs.output, inputs=inputs)["d_loss"]
        term = flaw_term(ds, x, logits, gs.output, inputs=inputs)
        term.backward()
        results.append([loss, term, *[p.grad for p in gs.parameters()], *ds.parameters(), *ds.buffers()])
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_class_probabilities_of_a_binary_head_have_two_channels() -> None:
    p = class_probabilities(torch.zeros(1, 1, 2, 2))
    assert p.shape == (1, 2, 2, 2) and math.isclose(float(p.sum(1).mean()), 1.0)


def test_ramp_by_epochs_or_over_the_first_quarter_of_the_run() -> None:
    from segcli.train.schedule import ramp

    assert ramp(0, 0.0, 0.0) == 1.0  # no warm-up
    assert ramp(4, 1.0, 0.9) == 0.25 and ramp(4, 6.0, 0.1) == 1.0  # epochs: progress does not matter
    assert ramp(-1, 50.0, 0.125) == 0.5 and ramp(-1, 0.0, 0.3) == 1.0  # auto: a quarter of the run


@pytest.mark.parametrize("decoupled", [True, False])
def test_adam_takes_the_fused_kernel_and_steps_as_the_loop_does(decoupled: bool) -> None:
    torch.manual_seed(0)
    a, b = torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)
    b.load_state_dict(a.state_dict())
    fast = adam(a.parameters(), decoupled=decoupled, lr=1e-2, weight_decay=0.01)
    loop = (torch.optim.AdamW if decoupled else torch.optim.Adam)(b.parameters(), lr=1e-2, weight_decay=0.01)
    assert fast.defaults.get("fused") is True  # the CPU has the fused kernel in every torch we install
    x, start = torch.randn(16, 8), [p.detach().clone() for p in a.parameters()]
    for _ in range(5):
        for net, opt in ((a, fast), (b, loop)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for p, q, p0 in zip(a.parameters(), b.parameters(), start):
        assert torch.allclose(p, q, atol=1e-6) and not torch.allclose(p, p0)  # moved, and alike
