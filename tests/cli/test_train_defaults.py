"""Adaptive defaults, the --time budget and ResNet encoders, through `segcli train`."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from segcli.data.synthetic import make_dataset
from tests.conftest import run_cli

SMALL = ["--base-channels", "4", "--depth", "2", "--precision", "32"]  # U-Net options: encoder auto -> unet


def _saved(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


def test_adaptive_defaults_recorded_in_config(tmp_path: Path) -> None:
    gray = make_dataset(tmp_path / "gray", count=6, size=(72, 100), classes=2, channels=1)
    rgb = make_dataset(tmp_path / "rgb", count=6, size=(200, 150), classes=3, channels=3)
    assert run_cli(["train", gray, "--epochs", "1", *SMALL, "--name", "gray"], cwd=tmp_path).code == 0
    assert run_cli(["train", rgb, "--epochs", "1", "--precision", "32", "--name", "rgb"], cwd=tmp_path).code == 0
    g, r = _saved(tmp_path / "runs/train/gray"), _saved(tmp_path / "runs/train/rgb")
    # patch: the images' short side rounded down to a multiple of 32; batch from the patch size
    assert g["train"]["img_size"] == 64 and g["train"]["batch_size"] == 8
    assert r["train"]["img_size"] == 128 and r["train"]["batch_size"] == 8
    # gray data has no 'up' (microscopy): vertical flips and 90-degree rotations are on
    assert g["train"]["orientation_free"] is True and r["train"]["orientation_free"] is False
    assert g["data_info"]["in_channels"] == 1 and r["data_info"]["in_channels"] == 3
    assert g["data_info"]["binary"] is True and r["data_info"]["num_classes"] == 3
    assert len(g["data_info"]["mean"]) == 1 and 0 < g["data_info"]["std"][0] < 1
    # encoder: ResNet-18 by default; the U-Net encoder when its options (--base-channels/--depth) are given
    assert g["model"]["encoder"] == "unet" and r["model"]["encoder"] == "resnet18"
    assert g["train"]["workers"] == 0  # CPU: loading in-process, the step keeps every core


def test_time_budget_is_honoured(binary_data: Path, tmp_path: Path) -> None:
    """Timed from outside: the whole command, interpreter and torch start-up included, fits the budget."""
    import subprocess
    import sys
    import time

    import os

    args = ["train", binary_data, "--time", "16s", *SMALL, "--img-size", "32", "-b", "2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")  # a tiny model: spinning threads on a busy machine only cost time
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "segcli", *map(str, args)], cwd=tmp_path, capture_output=True, text=True,
                       env=env)
    wall = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    assert 0.8 * 16 <= wall <= 1.05 * 16 + 0.5, wall  # + the interpreter's own start before segcli's clock
    ckpt = torch.load(tmp_path / "runs/train/exp/weights/last.pt", weights_only=True)
    assert ckpt["train"]["epochs"] == 1000  # the budget, not an epoch count, ended the run
    assert "time budget" in p.stderr


def test_resnet_encoder_with_local_imagenet_weights(binary_data: Path, tmp_path: Path) -> None:
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pt")
    r = run_cli(["train", binary_data, "--epochs", "1", "--encoder", "resnet18", "--weights", "r18.pt",
                 "--img-size", "32", "--precision", "32", "--lr", "1e-12"], cwd=tmp_path)
    assert r.code == 0, r.err
    ckpt = torch.load(tmp_path / "runs/train/exp/weights/last.pt", weights_only=True)
    assert ckpt["model"]["encoder"] == "resnet18"
    # layer1 weights came from the file (a negligible lr keeps them)
    assert torch.allclose(ckpt["generator"]["encoder.layer1.0.conv1.weight"], ref.layer1[0].conv1.weight)
    bad = run_cli(["train", binary_data, "--epochs", "1", "--weights", "r18.pt", "--encoder", "unet", *SMALL], cwd=tmp_path)
    assert bad.code == 2 and "ResNet encoder" in bad.err
