"""A 6-band 16-bit TIFF dataset: train, predict with overlays of chosen bands, export to ONNX (verified),
`info` with the band count, and the ONNX path reading stacks without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli
from tests.data.formats.builders import make_multiband

ROOT = Path(__file__).resolve().parents[2]
TINY2 = ["--base-channels", "4", "--depth", "2", "--batch-size", "2", "--img-size", "32", "--precision", "32"]


@pytest.fixture(scope="module")
def six_band(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset, working folder with runs/ holding a 6-band model trained with --bands 5,2,1)."""
    base = tmp_path_factory.mktemp("six_band")
    data = make_multiband(base / "data", bands=6)
    r = run_cli(["train", data, "--epochs", "1", *TINY2, "--bands", "5,2,1", "--logger", "none"], cwd=base)
    assert r.code == 0, r.err
    assert "6 bands" in r.err
    return data, base


def test_trains_with_band_statistics_and_predicts_overlays(six_band: tuple[Path, Path]) -> None:
    data, work = six_band
    info = json.loads(run_cli(["info", "--json"], cwd=work).out)
    assert info["in_channels"] == info["bands"] == 6 and info["display_bands"] == [5, 2, 1]
    assert len(info["normalization"]["mean"]) == 6
    r = run_cli(["predict", data / "images", "-o", "out", "--overlay"], cwd=work)
    assert r.code == 0, r.err
    mask = np.asarray(Image.open(work / "out" / "tile00.png"))
    over = np.asarray(Image.open(work / "out" / "tile00_overlay.png"))
    assert mask.shape == (32, 32) and over.shape == (32, 32, 3)
    fg = np.asarray(Image.open(data / "masks" / "tile00.png")) > 0
    if not mask.any():  # unlabeled pixels show the bands: band 5 (bright under the object) as red
        assert over[fg][:, 0].mean() > over[~fg][:, 0].mean() + 50
    r = run_cli(["predict", data / "images" / "tile00.tif", "-o", "one.png", "--overlay", "--bands", "9"], cwd=work)
    assert r.code == 2 and "--bands 9: the images have 6 band(s)" in r.err


def test_exports_to_onnx_verified_and_described(six_band: tuple[Path, Path]) -> None:
    _, work = six_band
    r = run_cli(["export", "--format", "onnx", "-o", "six.onnx"], cwd=work)
    assert r.code == 0, r.err
    assert "(N, 6, H, W)" in r.err and "max |difference|" in r.err
    info = run_cli(["info", "six.onnx"], cwd=work)
    assert info.code == 0 and "6 bands (shown: 5,2,1)" in info.out
    meta = json.loads(run_cli(["info", "six.onnx", "--json"], cwd=work).out)
    assert meta["in_channels"] == 6 and meta["export"]["bands"] == 6 and meta["export"]["color"] == "6 bands"


def test_onnx_predict_reads_stacks_without_torch(six_band: tuple[Path, Path]) -> None:
    data, work = six_band
    if not (work / "six.onnx").is_file():
        assert run_cli(["export", "-o", "six.onnx"], cwd=work).code == 0
    pt = run_cli(["predict", data / "images" / "tile01.tif", "-o", "pt.png", "--save-probs"], cwd=work)
    assert pt.code == 0, pt.err
    script = """
import sys
sys.modules["torch"] = None  # an inference-only install
from segcli.cli import main
try:
    main(["predict", sys.argv[1], "--model", "six.onnx", "-o", "onnx.png", "--overlay", "--save-probs"])
except SystemExit as e:
    assert not e.code, e.code
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", script, str(data / "images" / "tile01.tif")], cwd=work,
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    # a 1-epoch model sits near the threshold: compare what both backends compute, not the thresholded mask
    a, b = np.load(work / "pt_probs.npy"), np.load(work / "onnx_probs.npy")
    assert a.shape == b.shape == (1, 32, 32) and np.abs(a.astype(np.float32) - b).max() < 2e-3
    assert (work / "onnx_overlay.png").is_file()
