"""Class imbalance: --class-weights auto|list and --loss focal through the CLI (the losses: tests/train/test_losses.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import TINY, run_cli


def test_train_with_auto_weights_and_focal_records_them(multiclass_data: Path, tmp_path: Path) -> None:
    r = run_cli(["train", multiclass_data, "--epochs", "1", *TINY, "--class-weights", "auto", "--loss", "focal",
                 "--focal-gamma", "1.5"], cwd=tmp_path)
    assert r.code == 0, r.err
    run = tmp_path / "runs/train/exp"
    saved = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert saved["class_weights"] == "auto" and saved["loss"] == "focal" and saved["focal_gamma"] == 1.5
    ckpt = torch.load(run / "weights/last.pt", weights_only=True)
    weights = ckpt["data_summary"]["class_weights"]
    assert len(weights) == 4 and weights[0] == min(weights)  # background is the most common class
    info = run_cli(["info", run], cwd=tmp_path)
    assert "focal" in info.out and "(auto)" in info.out


def test_explicit_weights_from_a_config_list(binary_data: Path, tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text("class-weights: [1, 4]\nepochs: 1\n")
    r = run_cli(["train", binary_data, "--config", "w.yaml", *TINY], cwd=tmp_path)
    assert r.code == 0, r.err
    ckpt = torch.load(tmp_path / "runs/train/exp/weights/last.pt", weights_only=True)
    assert ckpt["data_summary"]["class_weights"] == [1.0, 4.0]


@pytest.mark.parametrize("args, needle", [
    (["--class-weights", "1,2,3"], "--class-weights"),
    (["--class-weights", "heavy"], "--class-weights"),
    (["--loss", "dice"], "--loss"),
])
def test_bad_imbalance_options(args: list, needle: str, binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["train", binary_data, "--epochs", "1", *TINY, *args], cwd=tmp_path)
    assert r.code == 2 and needle in r.err and "Traceback" not in r.err
