"""Resolving the user's options against the data: once, purely, and idempotently."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from segcli.config import DataInfo, ModelConfig, TrainConfig
from segcli.errors import UserError
from segcli.train.resolve import check_options, resolve

GRAY = DataInfo(num_classes=2, in_channels=1)
SIZES = [(100, 72)] * 4


def test_automatic_values_come_from_the_data_and_the_device() -> None:
    r = resolve(TrainConfig(), ModelConfig(), GRAY, SIZES, "cpu", ([0.4], [0.2]))
    assert (r.train.epochs, r.train.img_size, r.train.batch_size, r.train.workers) == (50, 64, 8, 0)
    assert r.train.orientation_free is True and r.model.encoder == "resnet18"
    assert r.data.mean == [0.4] and r.data.std == [0.2]
    assert resolve(TrainConfig(time="1m"), ModelConfig(), GRAY, SIZES, "cpu").train.epochs == 1000
    gpu = resolve(TrainConfig(), ModelConfig(), GRAY, SIZES, "cuda").train.workers  # only the device type is read
    assert gpu == min(4, max(0, (os.cpu_count() or 1) - 1))
    assert resolve(TrainConfig(workers=3), ModelConfig(), GRAY, SIZES, "cuda").train.workers == 3


def test_binary_masks_get_the_narrow_decoder_and_the_higher_rate_only_by_default() -> None:
    multi = DataInfo(num_classes=5, in_channels=3, binary=False)
    r = resolve(TrainConfig(), ModelConfig(), GRAY, SIZES, "cpu")
    assert (r.model.decoder_channels, r.train.lr_g) == ([128, 64, 32, 16, 16], 2e-3)
    again = resolve(r.train, r.model, GRAY, SIZES, "cpu")  # what --resume does with a saved config
    assert (again.model.decoder_channels, again.train.lr_g) == ([128, 64, 32, 16, 16], 2e-3)
    r = resolve(TrainConfig(), ModelConfig(), multi, SIZES, "cpu")
    assert (r.model.decoder_channels, r.train.lr_g) == ([], 1e-3)  # the encoder's own widths
    # a named encoder (and so every older saved config, decoder []) keeps the encoder's own widths
    assert resolve(TrainConfig(), ModelConfig(encoder="resnet18"), GRAY, SIZES, "cpu").model.decoder_channels == []
    r = resolve(TrainConfig(lr_g=5e-4), ModelConfig(decoder_channels=[64, 32, 16, 16, 16]), GRAY, SIZES, "cpu")
    assert (r.model.decoder_channels, r.train.lr_g) == ([64, 32, 16, 16, 16], 5e-4)  # the user's values win
    assert resolve(TrainConfig(), ModelConfig(base_channels=8), GRAY, SIZES, "cpu").model.decoder_channels == []


@pytest.mark.parametrize("gan, expected", [("flaw", (0.1, 4, 2e-3)), ("lsgan", (0.01, 2, 2e-4)), ("none", (0.01, 2, 2e-4))])
def test_each_gan_gets_its_own_defaults_and_explicit_values_win(gan: str, expected: tuple) -> None:
    t = resolve(TrainConfig(gan=gan), ModelConfig(), GRAY, SIZES, "cpu").train
    assert (t.adv_weight, t.d_every, t.lr_d) == expected
    t = resolve(TrainConfig(gan=gan, adv_weight=0.5, d_every=3, lr_d=1e-4), ModelConfig(), GRAY, SIZES, "cpu").train
    assert (t.adv_weight, t.d_every, t.lr_d) == (0.5, 3, 1e-4)


@pytest.mark.parametrize("gan, semi, gate, needle", [
    ("flaw", "adversarial", "none", "under --gan flaw use --semi flaw"),
    ("lsgan", "flaw", "none", "--semi flaw needs --gan flaw"),
    ("none", "consistency", "discriminator", "needs a discriminator"),
])
def test_semi_methods_that_need_another_discriminator_say_which(gan: str, semi: str, gate: str, needle: str,
                                                                tmp_path) -> None:
    cfg = TrainConfig(gan=gan, semi=semi, semi_gate=gate, unlabeled=str(tmp_path))
    with pytest.raises(UserError, match=needle):
        check_options(cfg, ModelConfig())


def test_resolve_is_pure_and_idempotent() -> None:
    cfg, mcfg = TrainConfig(), ModelConfig()
    r = resolve(cfg, mcfg, GRAY, SIZES, "cpu", ([0.4], [0.2]))
    assert cfg == TrainConfig() and mcfg == ModelConfig()  # the inputs are untouched
    again = resolve(r.train, r.model, r.data, SIZES, "cpu")
    assert again == r  # a saved (resolved) config resolves to itself: how --resume reuses it


@pytest.mark.parametrize("cfg, needle", [
    (TrainConfig(epochs=0), "--epochs 0"),
    (TrainConfig(epochs=-3), "--epochs -3"),
    (TrainConfig(loss="dice"), "--loss"),
    (TrainConfig(d_every=-1), "--d-every"),
    (TrainConfig(gan="wgan"), "flaw, lsgan, vanilla, hinge or none"),
    (TrainConfig(unlabeled="nowhere"), "nowhere"),
])
def test_bad_values_are_refused_before_any_work(cfg: TrainConfig, needle: str) -> None:
    with pytest.raises(UserError, match=needle):
        check_options(cfg, ModelConfig())
