"""Class imbalance: --class-weights auto|list and --loss focal, from the CLI down to the loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from segcli.data import IGNORE
from segcli.data.balance import auto_class_weights
from segcli.losses import dice_loss, probabilities, segmentation_loss
from tests.conftest import TINY, run_cli


def test_auto_weights_are_smoothed_inverse_frequency() -> None:
    w = auto_class_weights([900, 90, 10, 0])
    assert w[0] < w[1] < w[2] and w[3] == w[2]  # rarer -> heavier; absent -> the largest
    assert abs(w[2] / w[0] - 90 ** 0.5) < 2e-2  # sqrt(900/10) = 9.5, not 90
    assert abs(sum(w) / len(w) - 1) < 1e-3


def test_weighted_and_focal_losses() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[:, :2] = IGNORE
    w = torch.tensor([0.5, 1.0, 3.0])
    dice = dice_loss(probabilities(logits), labels)
    ce_w = F.cross_entropy(logits, labels, weight=w, ignore_index=IGNORE)
    assert torch.allclose(segmentation_loss(logits, labels, class_weights=w), ce_w + dice, atol=1e-6)
    # uniform weights and gamma 0 = the plain loss
    assert torch.allclose(segmentation_loss(logits, labels, class_weights=torch.ones(3)), segmentation_loss(logits, labels), atol=1e-6)
    assert segmentation_loss(logits, labels, focal_gamma=2.0) < segmentation_loss(logits, labels)  # focal shrinks CE
    binary = torch.randn(2, 1, 8, 8)
    blabels = torch.randint(0, 2, (2, 8, 8))
    up = segmentation_loss(binary, blabels, class_weights=torch.tensor([1.0, 5.0]))
    assert torch.isfinite(up) and not torch.allclose(up, segmentation_loss(binary, blabels))


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
