"""Shared fixtures: small generated datasets and an in-process CLI runner."""

from __future__ import annotations

import io
import os
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segcli.data.synthetic import make_dataset

# Tiny model and patch: every CLI training test runs in seconds.
TINY = ["--base-channels", "4", "--depth", "2", "--batch-size", "4", "--img-size", "32", "--precision", "32"]
# Enough to draw real masks on the synthetic shapes in about 10 s; width 4 is too fragile for that
# (validation mIoU 0.23-0.64 across seeds at width 4; 0.92 at width 8, seed 0).
FIT = ["--epochs", "25", "--lr", "0.01", "--base-channels", "8", "--depth", "2", "--batch-size", "4",
       "--img-size", "32", "--precision", "32"]


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(args: list[str], cwd: Path | None = None, stdin: str | None = None) -> CliResult:
    """Run `segcli ARGS` in this process (fast: torch is imported once per test session)."""
    from segcli.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_stdin = os.getcwd(), sys.stdin
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main([str(a) for a in args])
            except SystemExit as e:
                code = int(e.code or 0)
    finally:
        os.chdir(old_cwd)
        sys.stdin = old_stdin
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def binary_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Flat layout, 10 RGB images 48x48, masks 0/255."""
    return make_dataset(tmp_path_factory.mktemp("binary"), count=10, size=(48, 48), classes=2)


@pytest.fixture(scope="session")
def multiclass_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ + val/ layout, 4 classes with classes.txt, RGB 40x56 images."""
    return make_dataset(tmp_path_factory.mktemp("multi"), count=10, size=(40, 56), classes=4, split=True,
                        classes_file=True)


@pytest.fixture(scope="session")
def trained_binary(binary_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder trained for 1 epoch on binary_data; returns the working folder holding runs/."""
    work = tmp_path_factory.mktemp("work_binary")
    r = run_cli(["train", binary_data, "--epochs", "1", *TINY], cwd=work)
    assert r.code == 0, r.err
    return work


@pytest.fixture(scope="session")
def trained_multi(multiclass_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("work_multi")
    r = run_cli(["train", multiclass_data, "--epochs", "1", *TINY], cwd=work)
    assert r.code == 0, r.err
    return work


def save_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)
    return path


def _fit(data: Path, work: Path) -> Path:
    r = run_cli(["train", data, *FIT], cwd=work)
    assert r.code == 0, r.err
    return work


# Models trained long enough to draw real masks (1-epoch fixtures predict one class everywhere, so a
# mix-up between two code paths would not show): tiling, thresholds, metrics and every comparison
# between code paths (batch sizes, API vs CLI, ONNX vs PyTorch) run on these. About 10 s each.
@pytest.fixture(scope="session")
def fitted_binary(binary_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Working folder whose runs/ holds a binary model with validation mIoU around 0.9."""
    return _fit(binary_data, tmp_path_factory.mktemp("fitted_binary"))


@pytest.fixture(scope="session")
def fitted_multi(multiclass_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _fit(multiclass_data, tmp_path_factory.mktemp("fitted_multi"))
