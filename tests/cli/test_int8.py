"""segcli export --int8: calibrated, verified against fp32, refused above the tolerance, run torch-free."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def int8_model(fitted_multi: Path, multiclass_data: Path) -> Path:
    r = run_cli(["export", "--int8", "--calibrate", multiclass_data / "train" / "images", "--verify", multiclass_data,
                 "-o", "m8.onnx"], cwd=fitted_multi)
    assert r.code == 0, r.err
    assert r.out.strip() == "m8.onnx" and "verified on" in r.err
    return fitted_multi / "m8.onnx"


def test_int8_export_is_quantised_verified_and_described(int8_model: Path, fitted_multi: Path) -> None:
    import onnx

    ops = {n.op_type for n in onnx.load(str(int8_model)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    d = json.loads(run_cli(["info", int8_model, "--json"], cwd=fitted_multi).out)
    q = d["export"]["quantization"]
    assert d["export"]["weights_dtype"] == "int8" and q["format"] == "QDQ" and q["calibration"]["images"] == 8
    v = q["verified"]
    assert v["images"] == 2 and v["loss"] <= 0.01 and v["agreement"] > 0.9 and v["mIoU_fp32"] > 0.3
    assert d["train_size"] == 32 and d["judges"]["discriminator"] == "flaw"  # the same card as the fp32 export
    assert d["quality_estimator"]["file"] == "m8.quality.onnx" and (fitted_multi / "m8.quality.onnx").is_file()
    assert d["quality_estimator"]["weights_dtype"] in ("int8", "float32")


def test_int8_predict_evaluate_api_serve_never_import_torch(int8_model: Path, fitted_multi: Path,
                                                            multiclass_data: Path, tmp_path: Path) -> None:
    img = sorted((multiclass_data / "val" / "images").iterdir())[0]
    script = """
import json, sys
sys.modules["torch"] = None  # an inference-only install: any `import torch` fails
from segcli.cli import main
model, img, data, out = sys.argv[1:5]
for args in (["predict", img, "--model", model, "-o", out, "--quality"],
             ["evaluate", data, "--model", model, "--json"]):
    try:
        main(args)
    except SystemExit as e:
        assert not e.code, (args, e.code)
import segcli
mask = segcli.load(model).predict(img)
from fastapi.testclient import TestClient
from segcli.serve.app import create_app
from segcli.serve.config import ServeConfig
from segcli.serve.service import Service
cfg = ServeConfig(model=model)
with TestClient(create_app(cfg, Service.load(cfg))) as client:
    r = client.post("/predict", content=open(img, "rb").read())
    assert r.status_code == 200, r.text
loaded = sorted(m for m in sys.modules if (m == "torch" or m.startswith("torch.")) and sys.modules[m] is not None)
assert not loaded, loaded
print(json.dumps({"api_classes": sorted(set(mask.ravel().tolist()))}))
"""
    out = tmp_path / "int8.png"
    p = subprocess.run([sys.executable, "-c", script, str(int8_model), str(img), str(multiclass_data), str(out)],
                       cwd=fitted_multi, capture_output=True, text=True, env=_env())
    assert p.returncode == 0, p.stderr
    lines = [json.loads(ln) for ln in p.stdout.strip().splitlines()]
    assert lines[0]["mIoU"] > 0.3 and (tmp_path / "int8_error.png").is_file()  # evaluate's JSON
    assert len(lines[1]["api_classes"]) > 1  # the API's mask
    fp32 = run_cli(["predict", img, "--precision", "32", "-o", tmp_path / "fp32.png"], cwd=fitted_multi)
    assert fp32.code == 0, fp32.err
    a, b = np.array(Image.open(out)), np.array(Image.open(tmp_path / "fp32.png"))
    assert len(np.unique(a)) > 1 and (a == b).mean() > 0.9  # the int8 model draws the fp32 model's masks


def test_int8_refused_above_the_tolerance_exit_1_nothing_written(fitted_binary: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import segcli.infer.int8 as int8

    real = int8.calibration_feeds
    # ranges 1000x too wide: every activation rounds to a few levels and the masks fall apart
    monkeypatch.setattr(int8, "calibration_feeds", lambda pred, images: [x * 1000 for x in real(pred, images)])
    r = run_cli(["export", "--int8", "-o", "bad8.onnx"], cwd=fitted_binary)  # the run's own train / val images
    assert r.code == 1, r.err
    assert "loses" in r.err and "above --tolerance 0.01" in r.err and "not written" in r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert not (fitted_binary / "bad8.onnx").exists() and not (fitted_binary / "bad8.quality.onnx").exists()
    loose = run_cli(["export", "--int8", "-o", "loose8.onnx", "--tolerance", "1"], cwd=fitted_binary)
    assert loose.code == 0 and (fitted_binary / "loose8.onnx").is_file(), loose.err


def test_int8_needs_calibration_images_when_the_run_data_is_gone(trained_binary: Path, tmp_path: Path) -> None:
    from segcli.checkpoint import Checkpoint

    ckpt = Checkpoint.load(trained_binary / "runs" / "train" / "exp" / "weights" / "best.pt")
    moved = tmp_path / "moved.pt"
    ckpt.replace(train=replace(ckpt.train, data=str(tmp_path / "gone"))).save(moved)
    r = run_cli(["export", "--int8", "-m", moved], cwd=tmp_path)
    assert r.code == 2 and "--calibrate DIR" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    r = run_cli(["export", "--int8", "-m", moved, "--calibrate", tmp_path], cwd=tmp_path)
    assert r.code == 2 and "--calibrate" in r.err and "no images" in r.err, r.err
    r = run_cli(["export", "--int8", "--half", "-m", moved], cwd=tmp_path)
    assert r.code == 2 and "--int8 writes an ONNX model" in r.err
