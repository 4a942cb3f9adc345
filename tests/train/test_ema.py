"""The moving average of the generator's weights: its update, what is saved and used, and resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from segcli.checkpoint import Checkpoint
from segcli.config import DataInfo, ModelConfig, TrainConfig
from segcli.errors import Interrupted
from segcli.models import build_generator
from segcli.train.callbacks import Callbacks
from segcli.train.ema import ModelEMA
from segcli.train.engine import train
from segcli.train.resolve import resume_state

TINY_M = ModelConfig(base_channels=4, depth=2, disc_channels=8)


def test_update_is_a_ramped_exponential_average() -> None:
    torch.manual_seed(0)
    g = build_generator(TINY_M, DataInfo(in_channels=1))
    ema = ModelEMA(g, decay=0.9)
    w0 = next(ema.module.parameters()).clone()
    with torch.no_grad():
        next(g.parameters()).add_(1.0)
    ema.update(g)
    d = 0.5  # a running mean of (initial, current) until 1 / (1 - decay) updates
    assert ema.current_decay() == pytest.approx(d)
    w1 = next(ema.module.parameters())
    assert torch.allclose(w1, d * w0 + (1 - d) * next(g.parameters()), atol=1e-6)
    assert not w1.requires_grad and not ema.module.training
    g.train()(torch.randn(2, 1, 16, 16))  # BatchNorm counts batches: integer buffers are copied, not averaged
    ema.update(g)
    assert ema.module.state_dict()["encoder.stem.1.num_batches_tracked"] == g.state_dict()["encoder.stem.1.num_batches_tracked"]


def _cfg(data: Path, tmp_path: Path, **kw) -> TrainConfig:
    values = dict(data=str(data), epochs=3, batch_size=4, img_size=32, precision="32", project=str(tmp_path / "runs"),
                  ema=0.9, seed=2)
    return TrainConfig(**{**values, **kw})


def test_the_better_validated_weights_are_saved_and_predict_uses_them(binary_data: Path, tmp_path: Path) -> None:
    import csv

    import segcli

    result = train(_cfg(binary_data, tmp_path, epochs=2, patience=0), TINY_M)
    last = Checkpoint.load(result.run_dir / "weights" / "last.pt")
    best = Checkpoint.load(result.run_dir / "weights" / "best.pt")
    assert last.ema_updates == 4 and last.train_generator is not None  # 2 epochs x 2 steps
    key = "head.weight"
    assert not torch.equal(last.ema_generator[key], last.train_generator[key])  # the average is not the last weights
    with open(result.run_dir / "metrics.csv") as f:
        chosen = [row["ema"] for row in csv.DictReader(f)]
    assert chosen and set(chosen) <= {"0", "1"}
    # each epoch's model is whichever validated better: the average ("ema" 1) or the raw weights
    want = last.ema_generator if chosen[-1] == "1" else last.train_generator
    assert torch.equal(last.generator[key], want[key])
    if best.epoch == last.epoch:
        assert torch.equal(best.generator[key], last.generator[key])
    model = segcli.load(result.run_dir / "weights" / "best.pt", precision="32")
    used = model._predictor.backend.gen.state_dict()
    assert all(torch.equal(used[k].cpu(), v) for k, v in best.generator.items())


class _StopAfter(Callbacks):
    def on_epoch_end(self, row: dict) -> None:
        if row["epoch"] == 2:
            raise KeyboardInterrupt


def test_resume_restores_the_average(binary_data: Path, tmp_path: Path) -> None:
    full = train(_cfg(binary_data, tmp_path, name="full"), TINY_M)
    with pytest.raises(Interrupted):
        train(_cfg(binary_data, tmp_path, name="cut"), TINY_M, _StopAfter())
    cfg, mcfg, last = resume_state(str(tmp_path / "runs" / "cut"), "runs/train")
    assert last is not None and last.ema_updates == 4
    resumed = train(cfg, mcfg, resume=last)
    a = Checkpoint.load(full.run_dir / "weights" / "last.pt")
    b = Checkpoint.load(resumed.run_dir / "weights" / "last.pt")
    assert a.ema_updates == b.ema_updates == 6
    for state in ("generator", "train_generator", "ema_generator"):
        wa, wb = getattr(a, state), getattr(b, state)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), state
    assert [r["val_mIoU"] for r in full.history] == [r["val_mIoU"] for r in resumed.history]
