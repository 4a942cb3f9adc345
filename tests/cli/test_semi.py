"""Semi-supervised training (--unlabeled: consistency by default, --semi adversarial) through the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, run_cli


def test_unlabeled_folder_trains_and_records_pseudo_label_share(binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["train", binary_data, "--unlabeled", binary_data / "images", "--semi", "adversarial", "--gan", "lsgan", "--discriminator", "pixel",
                 "--epochs", "2", "--semi-start", "1", "--semi-threshold", "0.0", "--d-every", "1", *TINY], cwd=tmp_path)
    assert r.code == 0, r.err
    with open(tmp_path / "runs/train/exp/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[0]["semi_pixels"]) == 0.0  # warm-up epoch: no self-training yet
    assert 0.0 < float(rows[1]["semi_pixels"]) <= 1.0  # threshold 0: confident pixels are used
    ckpt = torch.load(tmp_path / "runs/train/exp/weights/last.pt", weights_only=True)
    assert ckpt["train"]["unlabeled"] == str(binary_data / "images")


def test_unlabeled_images_join_at_a_plateau_by_default(binary_data: Path, tmp_path: Path) -> None:
    """--lr 1e-9: validation stops improving, so the unlabeled images join after a quarter of the
    run and 3 stale validations (epoch 4 of 8 at the earliest); the summary says when."""
    r = run_cli(["train", binary_data, "--unlabeled", binary_data / "images", "--semi", "adversarial", "--gan", "lsgan", "--epochs", "8", "--lr", "1e-9",
                 "--semi-threshold", "0.0", "--d-every", "1", *TINY], cwd=tmp_path)
    assert r.code == 0, r.err
    with open(tmp_path / "runs/train/exp/metrics.csv") as f:
        share = [float(row["semi_pixels"]) for row in csv.DictReader(f)]
    first = next(i for i, s in enumerate(share) if s > 0.0)  # a row shows the labels it trained on
    assert first >= 4 and all(s > 0.0 for s in share[first:])  # a quarter, then 3 stale validations
    assert f"self-training from epoch {first}" in " ".join(r.err.split())


def test_adversarial_semi_needs_a_discriminator(binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["train", binary_data, "--unlabeled", binary_data / "images", "--semi", "adversarial", "--gan", "none",
                 "--epochs", "1", *TINY], cwd=tmp_path)
    assert r.code == 2 and "--unlabeled" in r.err and "discriminator" in r.err


def test_consistency_is_the_default_and_says_so(binary_data: Path, tmp_path: Path) -> None:
    """The default method needs no D (works with --gan none too), records the pseudo-labelled share
    of each epoch, and names itself in the summary and in the run's config."""
    import yaml

    r = run_cli(["train", binary_data, "--unlabeled", binary_data / "images", "--epochs", "2", "--gan", "none",
                 "--semi-threshold", "0.0", "--ema", "0.9", *TINY], cwd=tmp_path)
    assert r.code == 0, r.err
    with open(tmp_path / "runs/train/exp/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(float(row["semi_pixels"]) == 1.0 for row in rows)  # threshold 0: every pixel taught
    saved = yaml.safe_load((tmp_path / "runs/train/exp/config.yaml").read_text())["train"]
    assert saved["semi"] == "consistency" and saved["semi_threshold"] == 0.0 and saved["semi_weight"] == 1.0
    assert "consistency with a teacher" in " ".join(r.err.split())


def test_missing_unlabeled_folder_is_named(binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["train", binary_data, "--unlabeled", "nowhere", "--epochs", "1", *TINY], cwd=tmp_path)
    assert r.code == 2 and "nowhere" in r.err


def test_resumed_run_keeps_self_training(binary_data: Path, tmp_path: Path) -> None:
    """After --resume the pseudo-labels come back at once (from best.pt), not at the next improvement."""
    r = run_cli(["train", binary_data, "--unlabeled", binary_data / "images", "--semi", "adversarial", "--gan", "lsgan", "--epochs", "2",
                 "--semi-start", "1", "--semi-threshold", "0.0", "--d-every", "1", *TINY], cwd=tmp_path)
    assert r.code == 0, r.err
    last = tmp_path / "runs/train/exp/weights/last.pt"
    ckpt = torch.load(last, weights_only=True)
    ckpt.pop("finished")
    ckpt["train"]["epochs"] = 3
    ckpt["best_fitness"] = 2.0  # no later epoch can improve on it: only the resume may relabel
    torch.save(ckpt, last)
    r = run_cli(["train", "--resume", "runs/train/exp"], cwd=tmp_path)
    assert r.code == 0, r.err
    with open(tmp_path / "runs/train/exp/metrics.csv") as f:
        share = [float(row["semi_pixels"]) for row in csv.DictReader(f)]
    assert len(share) == 3 and share[0] == 0.0 and share[1] > 0.0 and share[2] > 0.0
