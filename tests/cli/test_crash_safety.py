"""Crash safety: kill -9 then --resume equals an uninterrupted run; Ctrl-C says how to resume;
malicious checkpoints run nothing; a full disk keeps old files (divergence: tests/train/test_engine.py)."""

from __future__ import annotations

import csv
import errno
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from segcli.checkpoint import read_state
from segcli.data.synthetic import make_dataset
from tests.cli.test_bad_input import one_error
from tests.conftest import TINY, CliResult, run_cli


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _spawn(args: list, cwd: Path) -> subprocess.Popen:
    path = os.pathsep.join(p for p in (str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")) if p)
    # one thread: tiny models gain nothing from more, and spinning OpenMP threads on a busy CI box cost minutes
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")
    # a background CI job inherits SIGINT ignored (POSIX shells do that for `cmd &`), and Python then
    # keeps ignoring it; restore the default so Ctrl-C reaches the run as it does at a terminal
    return subprocess.Popen([sys.executable, "-m", "segcli", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(path: Path, proc: subprocess.Popen, limit: float = 240.0) -> None:
    """Poll until `path` exists (the run is still going), or fail if the run ended first."""
    deadline = time.monotonic() + limit  # a hang guard only; nothing asserts on speed
    while not path.exists():
        assert proc.poll() is None, f"run ended before {path} appeared: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def kill_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("kill"), count=12, size=(32, 32), classes=3, seed=4)


def test_sigkill_then_resume_equals_uninterrupted_run(kill_data: Path, tmp_path: Path) -> None:
    epochs = 4
    common = ["train", kill_data, "--epochs", epochs, "--seed", 7, "--patience", 3, *TINY]
    full = _spawn(common + ["--name", "full"], tmp_path)  # the reference, alongside
    cut = _spawn(common + ["--name", "cut"], tmp_path)
    run = tmp_path / "runs/train/cut"
    _wait_for(run / "weights" / "last.pt", cut)
    cut.send_signal(signal.SIGKILL)  # mid-way: epoch 1 is saved, epoch 2 is under way
    cut.communicate()
    assert cut.returncode == -signal.SIGKILL
    killed_at = read_state(run / "weights" / "last.pt")["epoch"]  # the last good checkpoint loads
    assert 1 <= killed_at < epochs
    resumed = _spawn(["train", "--resume", run], tmp_path)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert f"resuming after epoch {killed_at}" in err
    _, err_full = full.communicate(timeout=600)
    assert full.returncode == 0, err_full

    a, b = _rows(tmp_path / "runs/train/full"), _rows(run)
    assert [r["epoch"] for r in b] == [r["epoch"] for r in a]  # no repeated or missing epochs
    assert [r["epoch"] for r in a] == [str(e) for e in range(1, len(a) + 1)]
    for ra, rb in zip(a, b):
        for key in ("val_mIoU", "val_Dice", "g_loss", "d_loss", "lr_g"):
            x, y = float(ra[key]), float(rb[key])  # d_loss is nan in an epoch without a D step (--d-every)
            assert (math.isnan(x) and math.isnan(y)) or abs(x - y) <= 1e-3, (ra["epoch"], key, ra[key], rb[key])
    wa = torch.load(tmp_path / "runs/train/full/weights/last.pt", weights_only=True)
    wb = torch.load(run / "weights/last.pt", weights_only=True)
    assert wa["best_epoch"] == wb["best_epoch"] and wa["bad_epochs"] == wb["bad_epochs"]
    assert wb["finished"] is True
    for k, t in wa["generator"].items():
        assert torch.allclose(t.float(), wb["generator"][k].float(), atol=1e-4), k
    # resuming the finished run says so and succeeds
    again = run_cli(["train", "--resume", run], cwd=tmp_path)
    assert again.code == 0 and "already finished" in again.err


def test_resume_after_early_stop_is_finished(binary_data: Path, tmp_path: Path) -> None:
    """A kill after the early-stop decision but before the run was marked finished must not train on."""
    assert run_cli(["train", binary_data, "--epochs", "2", *TINY, "--patience", "3"], cwd=tmp_path).code == 0
    last = tmp_path / "runs/train/exp/weights/last.pt"
    state = read_state(last)
    state.update(finished=False, bad_epochs=3, train={**state["train"], "epochs": 9})
    torch.save(state, last)
    r = run_cli(["train", "--resume", "runs/train/exp"], cwd=tmp_path)
    assert r.code == 0 and "already finished" in r.err
    assert len(_rows(tmp_path / "runs/train/exp")) == 2


def test_ctrl_c_keeps_last_pt_and_says_how_to_resume(binary_data: Path, tmp_path: Path) -> None:
    proc = _spawn(["train", binary_data, "--epochs", "500", *TINY], tmp_path)
    last = tmp_path / "runs/train/exp/weights/last.pt"
    _wait_for(last, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    line = one_error(CliResult(proc.returncode, "", err), "interrupted", code=130)
    assert "segcli train --resume runs/train/exp" in line
    state = read_state(last)
    assert state["epoch"] >= 1 and not state.get("finished")
    assert f"holds epoch {state['epoch']}" in line
    assert len(_rows(tmp_path / "runs/train/exp")) == state["epoch"]  # metrics.csv agrees with last.pt
    assert "opt_g" in state and state["history"][-1]["epoch"] == state["epoch"]


@pytest.mark.parametrize("command", ["predict", "evaluate", "export", "resume"])
def test_malicious_checkpoint_runs_nothing(command: str, binary_data: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": 1, "generator": Evil(), "opt_g": {}, "train": {}, "model": {}}, evil)
    args = {
        "predict": ["predict", binary_data / "images" / "img000.png", "--model", evil, "-o", "m.png"],
        "evaluate": ["evaluate", binary_data, "--model", evil],
        "export": ["export", "--model", evil, "-o", "e.onnx"],
        "resume": ["train", "--resume", evil],
    }[command]
    one_error(run_cli(args, cwd=tmp_path), "evil.pt", "refused", "nothing was executed")
    assert not marker.exists()
    # the same file through a fresh process (no test-module class around to help the unpickler)
    proc = subprocess.run([sys.executable, "-m", "segcli", *map(str, args)], cwd=tmp_path, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]), OMP_NUM_THREADS="1"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "refused" in proc.stderr
    assert not marker.exists()


def test_full_disk_keeps_earlier_outputs(binary_data: Path, tmp_path: Path, monkeypatch) -> None:
    real_replace = os.replace
    seen = {"last": 0}

    def full_disk(src, dst, *a, **k):
        if str(dst).endswith("last.pt"):
            seen["last"] += 1
            if seen["last"] == 2:  # epoch 2's last.pt: the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", full_disk)
    r = run_cli(["train", binary_data, "--epochs", "3", *TINY], cwd=tmp_path)
    line = one_error(r, "last.pt", "No space left", "free some disk space", code=1)
    assert "runs/train/exp/weights/last.pt" in line
    weights = tmp_path / "runs/train/exp/weights"
    assert read_state(weights / "last.pt")["epoch"] == 1  # the earlier file, intact
    assert [row["epoch"] for row in _rows(tmp_path / "runs/train/exp")] == ["1"]
    assert not list(weights.glob(".*.tmp"))  # the failed temporary file was removed
    assert math.isfinite(read_state(weights / "best.pt")["best_fitness"])
