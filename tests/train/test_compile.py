"""--compile: the auto rule, the eager fallback with one note, checkpoints without `_orig_mod.`,
the same losses compiled and eager, and --resume with compilation on."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from segcli.checkpoint import Checkpoint
from segcli.config import DataInfo, ModelConfig, TrainConfig
from segcli.errors import UserError
from segcli.train import compile as compiling
from segcli.train.callbacks import Callbacks
from segcli.train.engine import train
from segcli.train.resolve import check_options

TINY_M = ModelConfig(base_channels=4, depth=2, disc_channels=8)


def _cfg(data: Path, tmp_path: Path, **kw) -> TrainConfig:
    values = dict(data=str(data), epochs=2, batch_size=4, img_size=32, precision="32", project=str(tmp_path / "runs"))
    return TrainConfig(**{**values, **kw})


class _Notes(Callbacks):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def on_note(self, text: str) -> None:
        self.notes.append(text)


def _no_orig_mod(ckpt: Checkpoint) -> bool:
    dicts = [ckpt.generator, ckpt.discriminator, ckpt.estimator, ckpt.train_generator, ckpt.ema_generator]
    return not any("_orig_mod" in k for d in dicts if d for k in d)


def test_auto_rule_and_option_check() -> None:
    assert not compiling.decide("auto", "cpu", None) and not compiling.decide("auto", "cpu", 3600.0)
    assert compiling.decide("auto", "cuda", None) and compiling.decide("auto", "cuda", 600.0)
    assert not compiling.decide("auto", "cuda", 120.0)  # a 2-minute run must not spend it compiling
    assert compiling.decide("on", "cpu", 60.0) and not compiling.decide("off", "cuda", None)
    with pytest.raises(UserError, match="--compile"):
        check_options(TrainConfig(compile="fast"), ModelConfig())


def test_cache_dir_respects_the_users_choice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    compiling.use_cache_dir(tmp_path / "segcli")
    assert not (tmp_path / "segcli").exists()
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    compiling.use_cache_dir(tmp_path / "segcli")
    import os

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "segcli") and (tmp_path / "segcli").is_dir()


@pytest.mark.parametrize("when", ["call", "wrap"])
def test_a_failing_compile_trains_eagerly_with_one_note(when: str, binary_data: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))

    def broken_compile(module, **kw):
        if when == "wrap":
            raise RuntimeError("no compiler here")

        def call(*a, **k):
            raise RuntimeError("C++ compile failed\nlong log")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    notes = _Notes()
    result = train(_cfg(binary_data, tmp_path, compile="on"), TINY_M, notes)
    assert len(notes.notes) == 1 and "training eagerly" in notes.notes[0] and "long log" not in notes.notes[0]
    assert result.epochs_run == 2 and all(r["g_loss"] == r["g_loss"] for r in result.history)  # finite
    eager = train(_cfg(binary_data, tmp_path, compile="off", name="eager"), TINY_M)
    assert [r["g_loss"] for r in result.history] == [r["g_loss"] for r in eager.history]  # the eager run, exactly
    for name in ("best.pt", "last.pt"):
        assert _no_orig_mod(Checkpoint.load(result.run_dir / "weights" / name))


def test_the_wrapper_hides_the_compiled_module_from_checkpoints() -> None:
    from segcli.models import build_generator

    gen = build_generator(TINY_M, DataInfo(in_channels=1))
    wrapped = compiling.maybe_compile(gen, True, compiling.Fallback(), compiler=lambda m, **k: m)
    assert compiling.bare(wrapped) is gen and wrapped.output is gen.output
    assert list(wrapped.parameters()) == list(gen.parameters())
    assert compiling.maybe_compile(gen, False, compiling.Fallback()) is gen


@pytest.mark.slow
def test_a_compiled_step_gives_the_eager_losses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One real Inductor compilation of a tiny G + flaw D step (about half a minute on a 2-core CPU)."""
    from segcli.models import build_generator
    from segcli.models.estimator import build_estimator
    from segcli.train.gan import StepSettings, flaw_step, flaw_term, generator_step

    def train_step(g, d, opt_g, opt_d):
        logits = g(x)
        out = flaw_step(d, opt_d, x, logits, y, gen.output)
        return {**out, **generator_step(opt_g, logits, y, StepSettings(), [0.1 * flaw_term(d, x, logits, gen.output)])}

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    info = DataInfo(in_channels=1)
    gen0, disc0 = build_generator(TINY_M, info), build_estimator(1, 2, True, 8)
    x, y = torch.randn(2, 1, 32, 32), torch.randint(0, 2, (2, 32, 32))
    losses = {}
    for mode in ("eager", "compiled"):
        gen, disc = copy.deepcopy(gen0), copy.deepcopy(disc0)
        opt_g, opt_d = torch.optim.AdamW(gen.parameters(), 1e-3), torch.optim.AdamW(disc.parameters(), 2e-3)
        fb = compiling.Fallback()
        g, d = compiling.maybe_compile(gen, mode == "compiled", fb), compiling.maybe_compile(disc, mode == "compiled", fb)
        out = [train_step(g, d, opt_g, opt_d) for _ in range(2)]
        assert fb.reason is None
        losses[mode] = [{k: float(v) for k, v in o.items()} for o in out]
        assert not any("_orig_mod" in k for k in gen.state_dict())
    for a, b in zip(losses["eager"], losses["compiled"]):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-4), k


@pytest.mark.slow
def test_resume_with_compile_on(binary_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiled run (EMA on) cut after epoch 1 resumes; no `_orig_mod.` in its checkpoints."""
    from segcli.errors import Interrupted
    from segcli.train.resolve import resume_state

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))

    class StopAfterFirst(_Notes):
        def on_epoch_end(self, row) -> None:
            if row["epoch"] == 1:
                raise KeyboardInterrupt

    stop = StopAfterFirst()
    with pytest.raises(Interrupted):
        train(_cfg(binary_data, tmp_path, compile="on", ema=0.9, seed=1), TINY_M, stop)
    assert stop.notes == []  # it compiled
    cfg, mcfg, last = resume_state(str(tmp_path / "runs" / "exp"), "runs/train")
    assert cfg.compile == "on" and last is not None and last.epoch == 1 and _no_orig_mod(last)
    notes = _Notes()
    resumed = train(cfg, mcfg, notes, resume=last)
    assert notes.notes == [] and len(resumed.history) == 2
    ckpt = Checkpoint.load(resumed.run_dir / "weights" / "last.pt")
    assert ckpt.finished and _no_orig_mod(ckpt)
    Checkpoint.load(resumed.run_dir / "weights" / "best.pt").build_generator()  # export/predict rebuild it
