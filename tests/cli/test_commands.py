"""predict, evaluate and export in their first form, end to end through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import run_cli


def test_predict_folder_with_overlays(trained_binary: Path, binary_data: Path) -> None:
    r = run_cli(["predict", binary_data / "images", "-o", "out", "--overlay"], cwd=trained_binary)
    assert r.code == 0, r.err
    for img in (binary_data / "images").iterdir():
        mask = Image.open(trained_binary / "out" / f"{img.stem}.png")
        assert mask.mode == "L" and mask.size == Image.open(img).size
        assert set(np.unique(np.array(mask)).tolist()) <= {0, 255}
        assert (trained_binary / "out" / f"{img.stem}_overlay.png").is_file()


def test_predict_single_file_multiclass_palette(trained_multi: Path, multiclass_data: Path) -> None:
    img = sorted((multiclass_data / "val" / "images").iterdir())[0]
    r = run_cli(["predict", img, "-o", "one.png"], cwd=trained_multi)
    assert r.code == 0, r.err
    mask = Image.open(trained_multi / "one.png")
    assert mask.mode == "P" and mask.size == Image.open(img).size
    assert np.array(mask).max() < 4


def test_evaluate_json_is_the_only_stdout(trained_multi: Path, multiclass_data: Path) -> None:
    r = run_cli(["evaluate", multiclass_data, "--json"], cwd=trained_multi)
    assert r.code == 0, r.err
    result = json.loads(r.out)
    assert {"mIoU", "mDice", "per_class", "pixel_accuracy"} <= set(result)
    assert [c["name"] for c in result["per_class"]] == ["background", "shape1", "shape2", "shape3"]


def test_export_onnx_and_torchscript_then_predict_with_onnx(trained_binary: Path, binary_data: Path) -> None:
    for fmt, name in (("onnx", "m.onnx"), ("torchscript", "m.torchscript")):
        r = run_cli(["export", "--format", fmt, "-o", name], cwd=trained_binary)
        assert r.code == 0, r.err
        assert "max |difference|" in r.err and (trained_binary / name).is_file()
    img = sorted((binary_data / "images").iterdir())[0]
    a = run_cli(["predict", img, "-o", "a.png"], cwd=trained_binary)
    b = run_cli(["predict", img, "--model", "m.onnx", "-o", "b.png", "--precision", "32"], cwd=trained_binary)
    assert a.code == 0 and b.code == 0
    ma, mb = np.array(Image.open(trained_binary / "a.png")), np.array(Image.open(trained_binary / "b.png"))
    assert (ma == mb).mean() > 0.99


def test_no_model_is_a_clear_error(tmp_path: Path, binary_data: Path) -> None:
    r = run_cli(["predict", binary_data / "images"], cwd=tmp_path)
    assert r.code == 2 and "no trained model" in r.err


def test_module_entry_point_and_help() -> None:
    r = subprocess.run([sys.executable, "-m", "segcli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("train", "predict", "evaluate", "export"):
        assert cmd in r.stdout
    bad = subprocess.run([sys.executable, "-m", "segcli", "evaluate", "/nonexistent/dir"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "/nonexistent/dir" in bad.stderr
