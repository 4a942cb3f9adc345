"""The checkpoint contract: typed fields, safe loading, format 1 still readable."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from segcli.checkpoint import FORMAT, Checkpoint, read_state
from segcli.config import DataInfo, ModelConfig, TrainConfig
from segcli.errors import ModelFileError, UserError
from segcli.models import build_generator

INFO = DataInfo(num_classes=2, in_channels=1, mean=[0.3], std=[0.2])
MCFG = ModelConfig(encoder="unet", base_channels=4, depth=2)


def _ckpt() -> Checkpoint:
    torch.manual_seed(0)
    g = build_generator(MCFG, INFO)
    return Checkpoint(train=TrainConfig(epochs=3, img_size=32), model=MCFG, data=INFO, output=g.output,
                      generator=g.state_dict(), epoch=2, best_epoch=1, best_fitness=0.5,
                      history=[{"epoch": 1, "val_mIoU": 0.5}], metrics={"mIoU": 0.4, "mDice": 0.5})


def test_round_trip_keeps_every_field_and_the_weights(tmp_path: Path) -> None:
    ckpt = _ckpt()
    ckpt.save(tmp_path / "w.pt")
    raw = torch.load(tmp_path / "w.pt", weights_only=True)  # plain data and tensors only
    assert raw["format"] == FORMAT == 2 and raw["output"]["activation"] == "sigmoid"
    back = Checkpoint.load(tmp_path / "w.pt")
    assert back.path == str(tmp_path / "w.pt")
    for name in ("train", "model", "data", "output", "epoch", "best_epoch", "best_fitness", "history", "metrics"):
        assert getattr(back, name) == getattr(ckpt, name), name
    g = back.build_generator()
    assert not g.training
    for k, v in ckpt.generator.items():
        assert torch.equal(g.state_dict()[k], v), k  # the reloaded model holds exactly the saved weights
    assert not list(tmp_path.glob(".*tmp"))


def test_configs_are_frozen() -> None:
    ckpt = _ckpt()
    with pytest.raises(AttributeError):
        ckpt.train.epochs = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ckpt.data.mean = [0.0]  # type: ignore[misc]


def test_format_1_checkpoints_still_load(tmp_path: Path) -> None:
    g = build_generator(ModelConfig(), INFO)  # the default ResNet-18 encoder: size multiple 32
    old = {"format": 1, "segcli_version": "0.1.0", "model": asdict(ModelConfig(encoder="resnet18")),
           "data_info": asdict(INFO), "train": {"epochs": 50}, "generator": g.state_dict(), "epoch": 7,
           "run_dir": "runs/train/exp", "opt_g": None}
    torch.save(old, tmp_path / "old.pt")
    ckpt = Checkpoint.load(tmp_path / "old.pt")
    assert ckpt.format == 1 and ckpt.epoch == 7 and ckpt.train.epochs == 50
    assert ckpt.output.size_multiple == 32 and ckpt.output.binary and not ckpt.resumable
    assert ckpt.build_generator().output == ckpt.output


def test_old_transposed_conv_decoder_is_refused_clearly() -> None:
    ckpt = _ckpt()
    state = dict(ckpt.generator)
    state["decoder.blocks.0.up.weight"] = torch.zeros(16, 8, 2, 2)
    with pytest.raises(UserError, match=r"old\.pt: .*transposed convolutions; retrain"):
        ckpt.replace(generator=state, path="old.pt").build_generator()


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "generator": Evil()}, path)
    with pytest.raises(ModelFileError, match="refused"):
        read_state(path)
    assert not marker.exists()


def test_newer_or_malformed_files_are_one_line_errors(tmp_path: Path) -> None:
    state = _ckpt().to_dict()
    torch.save({**state, "format": FORMAT + 1}, tmp_path / "new.pt")
    with pytest.raises(ModelFileError, match="newer segcli"):
        Checkpoint.load(tmp_path / "new.pt")
    torch.save({**state, "data_info": "garbage"}, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match=r"bad\.pt: not a usable segcli checkpoint"):
        Checkpoint.load(tmp_path / "bad.pt")
