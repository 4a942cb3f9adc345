"""`segcli train` end to end through the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import TINY, run_cli


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_train_writes_full_run_folder(binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["train", binary_data, "--epochs", "2", *TINY], cwd=tmp_path)
    assert r.code == 0, r.err
    run = tmp_path / "runs" / "train" / "exp"
    assert r.out.strip() == str(Path("runs/train/exp"))
    for f in ["weights/best.pt", "weights/last.pt", "config.yaml", "metrics.csv", "plots/curves.png",
              "plots/val_samples.png"]:
        assert (run / f).is_file(), f
    rows = _rows(run)
    assert [row["epoch"] for row in rows] == ["1", "2"]
    for key in ("g_loss", "d_loss", "val_mIoU", "val_Dice", "lr_g", "lr_d", "seconds"):
        assert rows[0][key] not in ("", None)
    ckpt = torch.load(run / "weights" / "best.pt", weights_only=True)
    assert ckpt["data_info"]["binary"] is True and ckpt["data_info"]["in_channels"] == 3
    assert len(ckpt["data_info"]["mean"]) == 3
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["img_size"] == 32 and saved["model"]["base_channels"] == 4
    # a second run gets exp2
    r2 = run_cli(["train", binary_data, "--epochs", "1", *TINY], cwd=tmp_path)
    assert r2.code == 0 and (tmp_path / "runs/train/exp2/weights/last.pt").is_file()


@pytest.mark.parametrize("gan", ["lsgan", "vanilla", "hinge", "none"])
def test_every_gan_mode_trains(gan: str, multiclass_data: Path, tmp_path: Path) -> None:
    r = run_cli(["train", multiclass_data, "--epochs", "1", "--gan", gan, *TINY], cwd=tmp_path)
    assert r.code == 0, r.err
    row = _rows(tmp_path / "runs/train/exp")[0]
    assert (row["d_loss"] == "nan") == (gan == "none")


def test_d_every_is_recorded_and_d_losses_average_over_their_steps(binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["train", binary_data, "--epochs", "2", "--d-every", "3", *TINY, "-b", "1"], cwd=tmp_path)
    assert r.code == 0, r.err
    # D losses average over the steps that had a D step, not over all steps (tests/train/test_engine.py
    # checks which steps those are)
    assert all(float(row["d_loss"]) > 0 for row in _rows(tmp_path / "runs/train/exp"))
    assert yaml.safe_load((tmp_path / "runs/train/exp/config.yaml").read_text())["train"]["d_every"] == 3


@pytest.mark.parametrize("disc", ["patch", "global", "pixel"])
def test_every_discriminator_trains(disc: str, binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["train", binary_data, "--epochs", "1", "--gan", "lsgan", "--discriminator", disc, *TINY], cwd=tmp_path)
    assert r.code == 0, r.err
    ckpt = torch.load(tmp_path / "runs/train/exp/weights/last.pt", weights_only=True)
    assert ckpt["model"]["discriminator"] == disc and ckpt["discriminator"] is not None


def test_seed_makes_cpu_run_repeatable(binary_data: Path, tmp_path: Path) -> None:
    args = ["train", binary_data, "--epochs", "2", "--seed", "3", *TINY]
    assert run_cli(args + ["--name", "a"], cwd=tmp_path).code == 0
    assert run_cli(args + ["--name", "b"], cwd=tmp_path).code == 0
    a, b = _rows(tmp_path / "runs/train/a"), _rows(tmp_path / "runs/train/b")
    for ra, rb in zip(a, b):
        assert ra["g_loss"] == rb["g_loss"] and ra["val_mIoU"] == rb["val_mIoU"]


def test_resume_of_a_finished_run_says_so(binary_data: Path, tmp_path: Path) -> None:
    # resuming an interrupted run ends where the uninterrupted one does: tests/train/test_engine.py
    # (in-process) and tests/cli/test_crash_safety.py (kill -9 of a real process)
    assert run_cli(["train", binary_data, "--seed", "1", *TINY, "--epochs", "2", "--name", "done"], cwd=tmp_path).code == 0
    done = tmp_path / "runs/train/done"
    assert torch.load(done / "weights" / "last.pt", weights_only=True)["finished"] is True
    r = run_cli(["train", "--resume", done], cwd=tmp_path)
    assert r.code == 0 and "already finished" in r.err and r.out.strip() == str(done)


def test_config_file_equals_flags(binary_data: Path, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "epochs: 1\nseed: 5\nbase-channels: 4\ndepth: 2\nbatch_size: 4\nimg_size: 32\nprecision: '32'\n"
    )
    assert run_cli(["train", binary_data, "--config", "c.yaml", "--name", "cfg"], cwd=tmp_path).code == 0
    assert run_cli(["train", binary_data, "--epochs", "1", "--seed", "5", *TINY, "--name", "flags"], cwd=tmp_path).code == 0
    a, b = _rows(tmp_path / "runs/train/cfg"), _rows(tmp_path / "runs/train/flags")
    assert a[0]["val_mIoU"] == b[0]["val_mIoU"] and a[0]["g_loss"] == b[0]["g_loss"]


@pytest.mark.parametrize("args, needle", [
    (["train", "missing_dir"], "missing_dir"),
    (["train", "{data}", "--gan", "wgan"], "--gan"),
    (["train", "{data}", "--discriminator", "huge"], "choose one of"),
    (["train", "{data}", "--epochs", "x"], "--epochs"),
    (["train", "{data}", "--time", "soon"], "--time"),
    (["train", "{data}", "--device", "tpu"], "--device"),
])
def test_bad_options_exit_2_with_one_line(args: list, needle: str, binary_data: Path, tmp_path: Path) -> None:
    r = run_cli([a.format(data=binary_data) for a in args] + ["--epochs", "1"] * (args[-1] != "x"), cwd=tmp_path)
    assert r.code == 2
    lines = [ln for ln in r.err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0]
    assert "Traceback" not in r.err


def test_explicit_zero_epochs_is_an_error(binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["train", binary_data, "--epochs", "0", *TINY], cwd=tmp_path)  # the default stays automatic
    assert r.code == 2 and "--epochs 0: must be at least 1" in r.err and not (tmp_path / "runs").exists()


def test_train_init_starts_a_new_run_from_a_run_folder(binary_data: Path, tmp_path: Path) -> None:
    assert run_cli(["train", binary_data, "--epochs", "1", *TINY], cwd=tmp_path).code == 0
    r = run_cli(["train", binary_data, "--epochs", "1", "--init", "runs/train/exp", "--precision", "32",
                 "--batch-size", "4", "--img-size", "32"], cwd=tmp_path)
    assert r.code == 0, r.err
    assert r.out.strip() == str(Path("runs/train/exp2")) and "starting from runs/train/exp/weights/best.pt" in r.err
    cfg = yaml.safe_load((tmp_path / "runs/train/exp2/config.yaml").read_text())
    assert cfg["train"]["init"] == "runs/train/exp" and cfg["model"]["base_channels"] == 4  # the checkpoint's
    assert [row["epoch"] for row in _rows(tmp_path / "runs/train/exp2")] == ["1"]  # a new schedule, from epoch 1


def test_train_init_with_resume_is_a_one_line_error(binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["train", "runs/train/exp", "--resume", "--init", "runs/train/exp"], cwd=tmp_path)
    assert r.code == 2 and "pass one of them" in r.err and len(r.err.strip().splitlines()) == 1
