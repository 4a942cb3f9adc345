"""`train --init`: a new run that starts from another run's weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segcli.checkpoint import Checkpoint
from segcli.config import ModelConfig, TrainConfig
from segcli.errors import UserError
from segcli.train.callbacks import Callbacks
from segcli.train.distributed import Context
from segcli.train.engine import train
from segcli.train.safety import RunGuard
from segcli.train.state import setup
from segcli.train.warmstart import load_weights

TINY_M = ModelConfig(base_channels=4, depth=2, disc_channels=8)


def _cfg(data: Path, tmp_path: Path, **kw) -> TrainConfig:
    values = dict(data=str(data), epochs=1, batch_size=4, img_size=32, precision="32", project=str(tmp_path / "runs"))
    return TrainConfig(**{**values, **kw})


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


@pytest.mark.parametrize("gan", ["flaw", "lsgan"])
def test_a_new_run_starts_from_the_checkpoints_weights_with_fresh_optimizers(
        gan: str, binary_data: Path, tmp_path: Path) -> None:
    first = train(_cfg(binary_data, tmp_path, gan=gan, seed=1, ema=0.9), TINY_M, Callbacks())
    best = Checkpoint.load(first.run_dir / "weights" / "best.pt")
    # the architecture and statistics come from the checkpoint, even when the options are the defaults
    run = setup(Context(), _cfg(binary_data, tmp_path, gan=gan, init=str(first.run_dir)), ModelConfig(), None, RunGuard())
    assert run.mcfg == best.model and run.info.mean == best.data.mean and run.run_dir != first.run_dir
    assert _same(run.gen.state_dict(), best.generator) and _same(run.model.state_dict(), best.generator)
    assert run.start_epoch == 0 and run.history == [] and not run.opt_g.state  # a fresh optimizer
    judge = run.parts[-1] if gan == "lsgan" else run.parts[0]  # the flaw D, or the judge beside the real/fake D
    assert _same(judge.module.state_dict(), best.estimator)
    if gan == "lsgan":
        assert _same(run.parts[0].module.state_dict(), best.discriminator)
    loaded = run.data_summary["init"]["loaded"]
    assert loaded[0] == "generator" and len(loaded) == (3 if gan == "lsgan" else 2)


def test_init_refuses_another_architecture_or_other_outputs(binary_data: Path, multiclass_data: Path,
                                                          tmp_path: Path) -> None:
    first = train(_cfg(binary_data, tmp_path), TINY_M, Callbacks())
    with pytest.raises(UserError, match="architecture comes from the checkpoint.*--depth 3"):
        setup(Context(), _cfg(binary_data, tmp_path, init=str(first.run_dir)), ModelConfig(depth=3), None, RunGuard())
    with pytest.raises(UserError, match="binary mask.*4 classes"):
        setup(Context(), _cfg(multiclass_data, tmp_path, init=str(first.run_dir)), TINY_M, None, RunGuard())
    with pytest.raises(UserError, match="no checkpoint there"):
        setup(Context(), _cfg(binary_data, tmp_path, init=str(tmp_path / "nothing")), TINY_M, None, RunGuard())


def test_weights_of_another_shape_are_left_as_they_are() -> None:
    small, other = torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(3, 8, 3)
    before = {k: v.clone() for k, v in small.state_dict().items()}
    assert not load_weights(small, other.state_dict()) and not load_weights(small, None)
    assert _same(small.state_dict(), before)
    assert load_weights(small, torch.nn.Conv2d(3, 4, 3).state_dict()) and not _same(small.state_dict(), before)
