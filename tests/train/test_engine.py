"""The training loop's seams, reached directly: setup, train_one_epoch, validate, the tracker, fit."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from segcli.checkpoint import Checkpoint
from segcli.config import ModelConfig, TrainConfig
from segcli.errors import Interrupted, TrainingDiverged
from segcli.train.distributed import Context
from segcli.train.callbacks import Callbacks
from segcli.train.engine import epoch_loader, fit, train, train_one_epoch, validate
from segcli.train.safety import RunGuard
from segcli.train.state import BestTracker, Run, setup

TINY_M = ModelConfig(base_channels=4, depth=2, disc_channels=8)


def _cfg(data: Path, tmp_path: Path, **kw) -> TrainConfig:
    values = dict(data=str(data), epochs=3, batch_size=4, img_size=32, precision="32", project=str(tmp_path / "runs"))
    return TrainConfig(**{**values, **kw})


def _run(data: Path, tmp_path: Path, **kw) -> Run:
    return setup(Context(), _cfg(data, tmp_path, **kw), TINY_M, None, RunGuard())


def test_setup_resolves_once_and_builds_the_run(binary_data: Path, tmp_path: Path) -> None:
    run = _run(binary_data, tmp_path)
    assert run.cfg.epochs == 3 and run.cfg.workers == 0 and run.cfg.orientation_free is False
    assert run.mcfg.encoder == "unet" and run.info.binary and len(run.info.mean) == 3
    assert run.train_dl.dataset.info is run.info and run.gen.output.size_multiple == 4
    assert run.run_dir == tmp_path / "runs" / "exp" and not run.run_dir.exists()  # nothing written yet


def test_train_one_epoch_and_validate(binary_data: Path, tmp_path: Path) -> None:
    run = _run(binary_data, tmp_path, d_every=3, batch_size=1)
    before = [p.clone() for p in run.gen.parameters()]
    result = train_one_epoch(run, 0, Callbacks())
    steps = len(run.train_dl)
    assert result.steps["g_seg"] == steps == 8 and result.steps["d_loss"] == math.ceil(steps / 3)  # D every 3rd step
    # the default D is the flaw detector: its loss is d_loss, and no judge trains beside it (no e_loss)
    assert all(math.isfinite(v) for k, v in result.losses.items() if k != "e_loss") and result.stopped == ""
    assert math.isnan(result.losses["e_loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, run.gen.parameters()))
    metrics, samples = validate(run.gen, run.val_dl, run.info.num_classes, run.device, run.precision, keep=1)
    assert 0.0 <= metrics["mIoU"] <= 1.0 and len(samples) == 1 and run.gen.training


def test_best_tracker_and_patience() -> None:
    t = BestTracker(patience=2)
    assert t.update(1, 0.5) and not t.update(2, 0.5) and not t.exhausted
    assert not t.update(3, 0.4) and t.exhausted and t.best_epoch == 1
    assert t.update(4, 0.6) and not t.exhausted and (t.best_fitness, t.bad_epochs) == (0.6, 0)


class _PoisonAfterFirstEpoch(Callbacks):
    def __init__(self, run: Run, what: str) -> None:
        self.run, self.what = run, what

    def on_epoch_end(self, row: dict) -> None:
        if row["epoch"] == 1:
            net = self.run.parts[0].module if self.what == "discriminator" else self.run.gen
            value = float("inf") if self.what == "buffers" else float("nan")
            with torch.no_grad():
                if self.what == "buffers":  # finite losses (training uses batch statistics), non-finite model
                    next(b for b in net.buffers() if b.is_floating_point()).fill_(value)
                else:
                    next(net.parameters()).fill_(value)


@pytest.mark.parametrize("what", ["generator", "buffers", "discriminator"])
def test_divergence_stops_the_run_and_never_saves_nan(what: str, binary_data: Path, tmp_path: Path) -> None:
    run = _run(binary_data, tmp_path, d_every=1)
    with pytest.raises(TrainingDiverged, match="epoch 2") as e:
        fit(run, _PoisonAfterFirstEpoch(run, what))
    assert "last good epoch (1)" in str(e.value)
    for name in ("best.pt", "last.pt"):
        ckpt = Checkpoint.load(run.weights / name)
        assert ckpt.epoch == 1
        for state in (ckpt.generator, ckpt.estimator):  # the flaw D is saved as the estimator
            assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())
    with open(run.run_dir / "metrics.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1"]


class _StopAfter(Callbacks):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, row: dict) -> None:
        if row["epoch"] == self.epoch:
            raise KeyboardInterrupt  # Ctrl-C right after this epoch's files were written


@pytest.mark.parametrize("semi", [False, True], ids=["supervised", "consistency"])
def test_interrupted_run_resumes_to_the_uninterrupted_result(binary_data: Path, tmp_path: Path, semi: bool) -> None:
    from segcli.train.resolve import resume_state

    # semi: unlabeled images taught by an EMA teacher from the first step (threshold 0: every pixel)
    kw = dict(unlabeled=str(binary_data / "images"), ema=0.9, semi_threshold=0.0, semi_every=1) if semi else {}
    kw["d_every"] = 1  # the flaw D on every step: every epoch has a d_loss to compare
    full = train(_cfg(binary_data, tmp_path, seed=1, name="full", **kw), TINY_M)
    with pytest.raises(Interrupted, match="resume"):
        train(_cfg(binary_data, tmp_path, seed=1, name="cut", **kw), TINY_M, _StopAfter(2))
    cfg, mcfg, last = resume_state(str(tmp_path / "runs" / "cut"), "runs/train")
    assert last is not None and last.epoch == 2
    resumed = train(cfg, mcfg, resume=last)
    assert resumed.run_dir == tmp_path / "runs" / "cut" and len(resumed.history) == 3
    for a, b in zip(full.history, resumed.history):
        assert (a["g_loss"], a["d_loss"], a["val_mIoU"]) == (b["g_loss"], b["d_loss"], b["val_mIoU"])
    ca = Checkpoint.load(full.run_dir / "weights" / "last.pt")
    cb = Checkpoint.load(resumed.run_dir / "weights" / "last.pt")
    for wa, wb in ((ca.generator, cb.generator), (ca.estimator, cb.estimator)):
        assert all(torch.equal(wa[k], wb[k]) for k in wa)  # the same weights, bit for bit
    assert all(torch.equal(ca.opt_d["state"][0]["exp_avg"], cb.opt_d["state"][0]["exp_avg"]) for _ in [0])
    if semi:
        assert all(r["semi_pixels"] == 1.0 for r in full.history)  # the unlabeled images took part throughout
        assert [r["semi_pixels"] for r in full.history] == [r["semi_pixels"] for r in resumed.history]
        assert all(torch.equal(ca.ema_generator[k], cb.ema_generator[k]) for k in ca.ema_generator)


def test_the_quality_estimator_leaves_the_generator_as_it_would_be(binary_data: Path, tmp_path: Path) -> None:
    """The estimator learns from G's detached output: G and D train exactly as without it (same seed),
    so it costs no segmentation quality; the finished run stores it, calibrated, in best.pt."""
    runs = {q: train(_cfg(binary_data, tmp_path, epochs=2, name=f"q{int(q)}", quality=q, precision="auto",
                          gan="lsgan"), TINY_M)
            for q in (True, False)}
    with_e, without = (Checkpoint.load(runs[q].run_dir / "weights" / "last.pt") for q in (True, False))
    for part in ("generator", "discriminator"):
        a, b = getattr(with_e, part), getattr(without, part)
        assert all(torch.equal(a[k], b[k]) for k in a), part
    assert [r["g_loss"] for r in runs[True].history] == [r["g_loss"] for r in runs[False].history]
    assert without.estimator is None and with_e.estimator is not None and with_e.opt_e is not None
    best = Checkpoint.load(runs[True].run_dir / "weights" / "best.pt")
    cal = best.quality_calibration()
    assert best.has_estimator and cal.fitted_on["calibrated"] and cal.fitted_on["regions"] > 10
    assert cal.target == "Dice" and set(cal.baselines) == {"max_softmax", "neg_entropy"}
    assert math.isfinite(runs[True].history[-1]["e_loss"])


def test_progressive_trains_the_first_part_at_half_resolution(binary_data: Path, tmp_path: Path) -> None:
    run = _run(binary_data, tmp_path, epochs=4, batch_size=1, progressive=0.5)
    assert [epoch_loader(run, e) is run.low_dl for e in range(4)] == [True, True, False, False]
    low, full = next(iter(run.low_dl)), next(iter(run.train_dl))
    assert low[0].shape[0] == 4 * full[0].shape[0] == 4  # four times the batch ...
    assert low[0].shape[-2:] == (16, 16) and full[0].shape[-2:] == (32, 32)  # ... of crops half the size
    assert low[1].shape[-2:] == (16, 16)
    result = train_one_epoch(run, 0, Callbacks())
    assert result.steps["g_seg"] == len(run.low_dl) == 2 and all(math.isfinite(result.losses[k]) for k in ("g_seg", "d_loss"))
    assert _run(binary_data, tmp_path).low_dl is None  # off by default
