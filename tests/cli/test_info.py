"""`segcli info` on checkpoints and exported models, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli


def test_info_default_model_json(trained_multi: Path, multiclass_data: Path) -> None:
    r = run_cli(["info", "--json"], cwd=trained_multi)  # default: the newest run's best.pt
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["path"] == str(Path("runs/train/exp/weights/best.pt")) and d["kind"] == "checkpoint"
    assert d["classes"] == ["background", "shape1", "shape2", "shape3"] and d["task"] == "multiclass"
    assert d["in_channels"] == 3 and len(d["normalization"]["mean"]) == 3 and d["ignore_index"] == 255
    assert d["architecture"]["base_channels"] == 4 and d["architecture"]["depth"] == 2
    assert d["architecture"]["generator_parameters"] > 0 and d["architecture"]["discriminator_parameters"] > 0
    assert d["training"]["data"] == str(multiclass_data) and d["training"]["epochs_run"] == 1
    assert d["data"]["train_images"] == 8 and len(d["data"]["class_pixels"]) == 4
    assert d["best"]["epoch"] == 1 and 0.0 <= d["best"]["val_mIoU"] <= 1.0
    assert d["segcli_version"]


def test_info_table_and_run_folder(trained_binary: Path) -> None:
    r = run_cli(["info", "runs/train/exp"], cwd=trained_binary)
    assert r.code == 0, r.err
    for needle in ("binary", "background", "foreground", "best val", "mIoU", "architecture", "training data"):
        assert needle in r.out, needle


def test_info_exported_onnx(trained_binary: Path) -> None:
    assert run_cli(["export", "--format", "onnx", "-o", "info.onnx"], cwd=trained_binary).code == 0
    r = run_cli(["info", "info.onnx", "--json"], cwd=trained_binary)
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["kind"] == "onnx" and d["task"] == "binary" and d["classes"] == ["background", "foreground"]
    assert d["architecture"]["size_multiple"] == 4 and d["in_channels"] == 3


def test_info_config_and_errors(trained_binary: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "i.yaml"
    cfg.write_text(f"model: {trained_binary / 'runs/train/exp/weights/last.pt'}\njson: true\n")
    r = run_cli(["info", "--config", cfg], cwd=tmp_path)
    assert r.code == 0, r.err
    assert json.loads(r.out)["training"]["resumable"] is True
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    e = run_cli(["info", bad])
    assert e.code == 2 and str(bad) in e.err and "Traceback" not in e.err
    none = run_cli(["info"], cwd=tmp_path)
    assert none.code == 2 and "no trained model" in none.err


def test_info_reports_the_true_size_multiple(tmp_path: Path) -> None:
    """The default ResNet-18 encoder needs multiples of 32 (its deepest stride), the U-Net 2^depth."""
    from segcli.checkpoint import Checkpoint
    from segcli.config import DataInfo, ModelConfig, TrainConfig
    from segcli.models import build_generator

    info = DataInfo(in_channels=1)
    for name, mcfg, multiple in (("r18", ModelConfig(encoder="resnet18"), 32),
                                 ("unet", ModelConfig(encoder="unet", base_channels=4, depth=3), 8)):
        gen = build_generator(mcfg, info)
        Checkpoint(TrainConfig(), mcfg, info, gen.output, gen.state_dict()).save(tmp_path / f"{name}.pt")
        r = run_cli(["info", tmp_path / f"{name}.pt", "--json"])
        assert r.code == 0, r.err
        assert json.loads(r.out)["architecture"]["size_multiple"] == multiple == gen.size_multiple
