"""Semi-supervised adversarial training (--unlabeled) through the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from segcli.gan import StepSettings, train_step
from segcli.semi import SemiSettings
from tests.conftest import TINY, run_cli


def test_unlabeled_folder_trains_and_records_pseudo_label_share(binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["train", binary_data, "--unlabeled", binary_data / "images", "--discriminator", "pixel",
                 "--epochs", "2", "--semi-start", "1", "--semi-threshold", "0.0", "--d-every", "1", *TINY], cwd=tmp_path)
    assert r.code == 0, r.err
    with open(tmp_path / "runs/train/exp/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[0]["semi_pixels"]) == 0.0  # warm-up epoch: no self-training yet
    assert 0.0 < float(rows[1]["semi_pixels"]) <= 1.0  # threshold 0: confident pixels are used
    ckpt = torch.load(tmp_path / "runs/train/exp/weights/last.pt", weights_only=True)
    assert ckpt["train"]["unlabeled"] == str(binary_data / "images")


def test_self_training_starts_after_a_quarter_of_the_run_by_default(binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["train", binary_data, "--unlabeled", binary_data / "images", "--epochs", "4",
                 "--semi-threshold", "0.0", "--d-every", "1", *TINY], cwd=tmp_path)
    assert r.code == 0, r.err
    with open(tmp_path / "runs/train/exp/metrics.csv") as f:
        share = [float(row["semi_pixels"]) for row in csv.DictReader(f)]
    assert share[0] == 0.0 and all(s > 0.0 for s in share[2:])  # epoch 1 is the first quarter


def test_unlabeled_needs_a_discriminator(binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["train", binary_data, "--unlabeled", binary_data / "images", "--gan", "none", "--epochs", "1",
                 *TINY], cwd=tmp_path)
    assert r.code == 2 and "--unlabeled" in r.err


def test_missing_unlabeled_folder_is_named(binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["train", binary_data, "--unlabeled", "nowhere", "--epochs", "1", *TINY], cwd=tmp_path)
    assert r.code == 2 and "nowhere" in r.err


def test_self_training_uses_only_confident_pixels() -> None:
    from segcli.config import DataInfo, ModelConfig
    from segcli.models import build_discriminator, build_generator

    torch.manual_seed(0)
    info = DataInfo(num_classes=3, in_channels=1, binary=False)
    cfg = ModelConfig(base_channels=4, depth=2, disc_channels=8, discriminator="pixel")
    g, d = build_generator(cfg, info), build_discriminator(cfg, info)
    opt_g, opt_d = torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters())
    x, y, u = torch.randn(2, 1, 32, 32), torch.randint(0, 3, (2, 32, 32)), torch.randn(2, 1, 32, 32)
    never = train_step(g, d, opt_g, opt_d, x, y, StepSettings(), 0.01, unlabeled=u,
                       semi=SemiSettings(threshold=1.1), self_training=True)
    always = train_step(g, d, opt_g, opt_d, x, y, StepSettings(), 0.01, unlabeled=u,
                        semi=SemiSettings(threshold=-0.1), self_training=True)
    assert float(never["semi_pixels"]) == 0.0 and float(never["semi_ce"]) == 0.0
    assert float(always["semi_pixels"]) == 1.0 and float(always["semi_ce"]) > 0


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
        out = train_step(gc, dc, opt_g, opt_d, x, y, StepSettings(), 0.01, unlabeled=unlabeled,
                         semi=SemiSettings(), self_training=True)
        seg.append(float(out["g_seg"]))
    assert seg[0] == pytest.approx(seg[1], abs=1e-6)
