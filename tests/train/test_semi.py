"""Semi-supervised terms: the unlabeled pass, the teacher's pseudo-labels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segcli.models import class_probabilities
from segcli.train.gan import StepSettings, discriminator_step, generator_step
from segcli.train.semi import SemiSettings, unlabeled_terms


def train_step(g, d, opt_g, opt_d, x, y, settings, unlabeled=None):
    """The loop's order for a real/fake D: G's pass, D's step, then G's step with the unlabeled term."""
    logits = g(x)
    losses = discriminator_step(d, opt_d, x, y, class_probabilities(logits.detach()), settings)
    terms = []
    if unlabeled is not None:
        term, logged = unlabeled()
        terms.append(term)
        losses.update(logged)
    losses.update(generator_step(opt_g, logits, y, settings, terms))
    return losses


def test_self_training_learns_only_from_pseudo_labelled_pixels() -> None:
    from segcli.config import DataInfo, ModelConfig
    from segcli.models import build_discriminator, build_generator

    torch.manual_seed(0)
    info = DataInfo(num_classes=3, in_channels=1, binary=False)
    cfg = ModelConfig(base_channels=4, depth=2, disc_channels=8, discriminator="pixel")
    g, d = build_generator(cfg, info), build_discriminator(cfg, info)
    opt_g, opt_d = torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters())
    x, y, u = torch.randn(2, 1, 32, 32), torch.randint(0, 3, (2, 32, 32)), torch.randn(2, 1, 32, 32)
    none = torch.full((2, 32, 32), 255)
    def term(pseudo):
        return lambda: unlabeled_terms(d, u, pseudo, g(u), "lsgan", SemiSettings())

    before = train_step(g, d, opt_g, opt_d, x, y, StepSettings(gan="lsgan"), unlabeled=term(none))
    after = train_step(g, d, opt_g, opt_d, x, y, StepSettings(gan="lsgan"), unlabeled=term(y))
    assert float(before["semi_ce"]) == 0.0 and float(after["semi_ce"]) > 0


def test_unlabeled_batch_does_not_touch_the_labeled_pass() -> None:
    """The labeled batch's loss is the same with or without an unlabeled batch beside it: G runs a
    separate pass over the unlabeled images (a shared pass mixed their BatchNorm statistics into
    the labeled ones and cost 0.11 ISBI test mIoU)."""
    import copy

    from segcli.config import DataInfo, ModelConfig
    from segcli.models import build_discriminator, build_generator

    torch.manual_seed(0)
    info = DataInfo(num_classes=3, in_channels=1, binary=False)
    cfg = ModelConfig(base_channels=4, depth=2, disc_channels=8)
    g, d = build_generator(cfg, info), build_discriminator(cfg, info)
    x, y = torch.randn(2, 1, 32, 32), torch.randint(0, 3, (2, 32, 32))
    u = torch.randn(2, 1, 32, 32) * 3 + 2  # deliberately unlike the labeled batch
    seg = []
    for unlabeled in (None, u):
        gc, dc = copy.deepcopy(g), copy.deepcopy(d)
        opt_g, opt_d = torch.optim.Adam(gc.parameters()), torch.optim.Adam(dc.parameters())
        term = None if unlabeled is None else (lambda: unlabeled_terms(dc, unlabeled, y, gc(unlabeled), "lsgan", SemiSettings()))
        out = train_step(gc, dc, opt_g, opt_d, x, y, StepSettings(gan="lsgan"), unlabeled=term)
        seg.append(float(out["g_seg"]))
    assert seg[0] == pytest.approx(seg[1], abs=1e-6)


@pytest.mark.parametrize("threshold", [1.1, -0.1])
def test_teacher_labels_the_pixels_where_d_is_confident(binary_data: Path, threshold: float) -> None:
    from contextlib import nullcontext

    from segcli.config import DataInfo, ModelConfig, TrainConfig
    from segcli.train.distributed import Context
    from segcli.models import build_discriminator, build_generator
    from segcli.train.semi import UnlabeledSet

    torch.manual_seed(0)
    info = DataInfo(in_channels=3, binary=True)
    mcfg = ModelConfig(base_channels=4, depth=2, disc_channels=8, discriminator="pixel")
    g, d = build_generator(mcfg, info), build_discriminator(mcfg, info)
    cfg = TrainConfig(unlabeled=str(binary_data / "images"), img_size=32, batch_size=2, workers=0, orientation_free=False,
                      gan="lsgan")
    unlabeled = UnlabeledSet(cfg, info, Context(), torch.device("cpu"), nullcontext, SemiSettings(threshold=threshold))
    assert float((next(unlabeled.batches(0))[1] != 255).float().mean()) == 0.0  # nothing labelled yet
    from segcli.device import select_precision
    from segcli.train.adversary import RealFakeDiscriminator
    from segcli.train.gan import StepSettings as _S

    judge = RealFakeDiscriminator(d, cfg, _S(gan="lsgan"), select_precision("32", torch.device("cpu")))
    share = unlabeled.relabel(g, judge)
    assert share == (1.0 if threshold < 0 else 0.0)  # lsgan confidence lies in [0, 1]
    labels = next(unlabeled.batches(1))[1]  # augmented crops of the new labels reach the loader
    assert float((labels != 255).float().mean()) == share
    assert set(labels.unique().tolist()) <= {0, 1, 255}
    assert g.training and d.training  # back to training mode


@pytest.mark.parametrize(("start", "fits", "expected"), [
    (-1, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95], None),  # still climbing: the labels get it all
    (-1, [0.5, 0.6, 0.7, 0.7, 0.701, 0.69, 0.7, 0.7, 0.7, 0.7], 6),  # gains under 0.005 do not count
    (-1, [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], 4),  # flat: 3 stale validations, past a quarter
    (2, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95], 2),  # an explicit epoch count
])
def test_start_rule(start: float, fits: list[float], expected) -> None:
    from segcli.train.semi import StartRule

    rule = StartRule(start)
    started = next((e for e, fit in enumerate(fits, 1) if rule.check(e, e / len(fits), fit)), None)
    assert started == expected


def test_strong_view_mixes_images_and_pseudo_labels_alike() -> None:
    from segcli.train.consistency import ConsistencySettings, strong_view

    torch.manual_seed(0)
    n, h, w = 4, 16, 16
    x = torch.arange(n).float().view(n, 1, 1, 1).expand(n, 1, h, w).clone()  # image i is constant i
    y = torch.arange(n).view(n, 1, 1).expand(n, h, w).clone()  # and so is its label
    xs, ys = strong_view(x, y, ConsistencySettings(jitter=0.0, blur=0.0, cutmix=1.0))
    assert torch.equal(xs[:, 0].round().long(), ys)  # every pasted pixel brought its own label
    assert (ys != y).any() and torch.equal(x[:, 0].long(), y)  # mixed, and the inputs untouched


def test_pseudo_labels_keep_only_confident_pixels_and_the_term_learns_from_them() -> None:
    from segcli.config import DataInfo, ModelConfig
    from segcli.data.io import IGNORE
    from segcli.models import build_generator
    from segcli.train.consistency import ConsistencySettings, consistency_loss, pseudo_labels

    torch.manual_seed(0)
    g = build_generator(ModelConfig(base_channels=4, depth=2), DataInfo(num_classes=3, in_channels=1, binary=False))
    x = torch.randn(2, 1, 16, 16)
    assert (pseudo_labels(g, x, ConsistencySettings(threshold=1.01)) == IGNORE).all()
    every = pseudo_labels(g, x, ConsistencySettings(threshold=0.0))
    assert (every != IGNORE).all() and g.training  # the teacher's mode is restored
    loss, out = consistency_loss(g, g, x, ConsistencySettings(threshold=1.01))
    assert float(loss.detach()) == 0.0 and float(out["semi_share"]) == 0.0  # nothing confident: nothing taught
    loss, out = consistency_loss(g, g, x, ConsistencySettings(threshold=0.0, weight=2.0))
    assert float(loss.detach()) > 0 and float(out["semi_share"]) == 1.0
    loss.backward()
    assert all(p.grad is not None for p in g.parameters() if p.requires_grad)


class _Judge(torch.nn.Module):
    """A discriminator that finds every mask real (score 1) or fake (score 0), per pixel."""

    def __init__(self, score: float) -> None:
        super().__init__()
        self.score = score
        self.unused = torch.nn.Parameter(torch.zeros(()))  # an optimizer needs something to hold

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.full_like(z[:, :1], self.score)


def test_discriminator_gate_keeps_only_what_d_finds_real() -> None:
    from segcli.config import DataInfo, ModelConfig
    from segcli.data.io import IGNORE
    from segcli.models import build_generator
    from segcli.train.consistency import ConsistencySettings, pseudo_labels

    torch.manual_seed(0)
    g = build_generator(ModelConfig(base_channels=4, depth=2), DataInfo(num_classes=3, in_channels=1, binary=False))
    x = torch.randn(2, 1, 16, 16)
    s = ConsistencySettings(threshold=0.0, gate="discriminator")
    ungated = pseudo_labels(g, x, s)
    agree = lambda x, logits: torch.ones_like(logits[:, 0], dtype=torch.bool)  # noqa: E731
    objects = lambda x, logits: torch.zeros_like(logits[:, 0], dtype=torch.bool)  # noqa: E731
    assert torch.equal(pseudo_labels(g, x, s, gate=agree), ungated)  # D agrees: nothing dropped
    assert (pseudo_labels(g, x, s, gate=objects) == IGNORE).all()  # D objects everywhere: nothing kept


def test_each_discriminator_gives_the_gate_its_meaning() -> None:
    """A real/fake D keeps the pixels it finds real; the flaw D keeps those it expects right (error
    probability under one half; an untrained flaw D is max-softmax: confident pixels pass)."""
    from segcli.config import TrainConfig
    from segcli.device import select_precision
    from segcli.models import OutputSpec
    from segcli.train.adversary import FlawDiscriminator, RealFakeDiscriminator

    cpu, fp32 = torch.device("cpu"), select_precision("32", torch.device("cpu"))
    out = OutputSpec(False, 3, 4)
    x = torch.randn(2, 1, 8, 8)
    sure, unsure = torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)
    sure[:, 1] = 6.0  # max probability ~0.99; unsure: uniform, max 1/3
    for score, kept in ((1.0, True), (0.0, False)):
        real_fake = RealFakeDiscriminator(_Judge(score), TrainConfig(gan="lsgan"), StepSettings(gan="lsgan"), fp32)
        gate = real_fake.gate(x, sure, out)
        assert bool(gate.all()) is kept and bool(gate.any()) is kept
    flaw = FlawDiscriminator(TrainConfig(gan="flaw", lr_d=1e-3), 1, 3, out, cpu, fp32)
    flaw.module.eval()
    assert flaw.gate(x, sure, out).all() and not flaw.gate(x, unsure, out).any()
