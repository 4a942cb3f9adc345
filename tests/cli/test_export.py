"""segcli export: verified files, their contract, real clients (ORT, OpenCV DNN), and the torch-free path."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli, save_png

ROOT = Path(__file__).resolve().parents[2]
# Every op a U-Net export may hold: plain feed-forward, nothing data-dependent, BatchNorm folded.
ALLOWED_OPS = {"Conv", "Resize", "Constant", "MaxPool", "Relu", "Concat", "Sigmoid", "Softmax", "Cast"}


def _export(work: Path, *args: str) -> tuple[Path, float]:
    r = run_cli(["export", *args], cwd=work)
    assert r.code == 0, r.err
    path = work / r.out.strip().splitlines()[-1]
    diff = float(re.search(r"max \|difference\| vs PyTorch = (\S+)", r.err).group(1))
    return path, diff


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize("trained", ["fitted_binary", "fitted_multi"])
def test_export_both_formats_verified_with_full_metadata(trained: str, request: pytest.FixtureRequest) -> None:
    import onnx

    from segcli.checkpoint import read_state
    from segcli.infer.export import read_torchscript_metadata
    from segcli.infer.onnxrt import read_onnx_metadata

    work: Path = request.getfixturevalue(trained)
    onnx_path, d1 = _export(work, "--format", "onnx", "-o", "m.onnx")
    ts_path, d2 = _export(work, "-o", "m.torchscript")  # format from the suffix
    assert d1 < 1e-4 and d2 < 1e-4
    ckpt = read_state(next(work.glob("runs/train/*/weights/best.pt")))
    info = ckpt["data_info"]
    for meta in (read_onnx_metadata(onnx_path), read_torchscript_metadata(ts_path)):
        assert meta["in_channels"] == info["in_channels"] and meta["binary"] == info["binary"]
        assert meta["mean"] == info["mean"] and meta["std"] == info["std"]
        assert meta["size_multiple"] == ckpt["output"]["size_multiple"] == 4  # U-Net of depth 2
        assert meta["out_channels"] == (1 if info["binary"] else info["num_classes"])
        assert meta["threshold"] == (0.5 if info["binary"] else None)
        assert meta["activation"] == ("sigmoid" if info["binary"] else "softmax")
        assert len(meta["class_names"]) == info["num_classes"]
        assert (meta["input_name"], meta["output_name"]) == ("image", "probabilities")
    proto = onnx.load(str(onnx_path))
    assert proto.opset_import[0].version == 17
    ops = {n.op_type for n in proto.graph.node}
    assert ops <= ALLOWED_OPS and "BatchNormalization" not in ops, ops
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", info["in_channels"], "height", "width"]


@pytest.mark.parametrize("trained", ["fitted_binary", "fitted_multi"])
def test_opencv_dnn_runs_the_onnx_file_like_onnx_runtime(trained: str, request: pytest.FixtureRequest) -> None:
    import cv2
    import onnxruntime as ort

    work: Path = request.getfixturevalue(trained)
    for half, tol in ((False, 1e-5), (True, 1e-3)):
        path, _ = _export(work, "-o", "cv.onnx", *(["--half"] if half else []))
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        net = cv2.dnn.readNetFromONNX(str(path))
        c = sess.get_inputs()[0].shape[1]
        for shape in ((1, c, 48, 64), (2, c, 36, 20)):
            x = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)
            want = sess.run(None, {"image": x})[0]
            net.setInput(x)
            got = net.forward()
            assert got.shape == want.shape == (shape[0], want.shape[1], *shape[2:])
            assert np.abs(got - want).max() < tol, (half, shape)
            assert want.shape[1] == 1 or np.allclose(want.sum(1), 1, atol=1e-3)  # softmax sums to 1


def _odd_image(src: Path, dst: Path) -> Path:
    """An image whose size is no multiple of the model's: padding and cropping are exercised."""
    return save_png(dst, np.array(Image.open(src).convert("RGB"))[:37, :43])


def test_predict_and_evaluate_with_onnx_never_import_torch(fitted_multi: Path, multiclass_data: Path) -> None:
    _export(fitted_multi, "-o", "nt.onnx")
    img = _odd_image(sorted((multiclass_data / "val" / "images").iterdir())[0], fitted_multi / "odd" / "a.png")
    pt = run_cli(["predict", img, "-o", "pt.png", "--precision", "32"], cwd=fitted_multi)
    assert pt.code == 0, pt.err
    ev_pt = run_cli(["evaluate", multiclass_data, "--json", "--precision", "32"], cwd=fitted_multi)
    assert ev_pt.code == 0, ev_pt.err
    script = """
import json, sys
if sys.argv[1] == "block":
    sys.modules["torch"] = None  # an inference-only install: any `import torch` fails
from segcli.cli import main
for args in (["predict", sys.argv[2], "--model", "nt.onnx", "-o", "onnx.png", "--quality"],
             ["evaluate", sys.argv[3], "--model", "nt.onnx", "--json", "--quality"]):
    try:
        main(args)
    except SystemExit as e:
        assert not e.code, (args, e.code)
loaded = sorted(m for m in sys.modules if (m == "torch" or m.startswith("torch.")) and sys.modules[m] is not None)
assert not loaded, loaded
"""
    for mode in ("plain", "block"):
        r = subprocess.run([sys.executable, "-c", script, mode, str(img), str(multiclass_data)], cwd=fitted_multi,
                           capture_output=True, text=True, env=_env())
        assert r.returncode == 0, r.stderr
        ev_onnx = json.loads(r.stdout.strip().splitlines()[-1])
        assert abs(ev_onnx["mIoU"] - json.loads(ev_pt.out)["mIoU"]) < 1e-3
        assert ev_onnx["quality"]["images"] > 0 and (fitted_multi / "onnx_error.png").is_file()  # --quality, torch-free
    a = np.array(Image.open(fitted_multi / "pt.png"))
    b = np.array(Image.open(fitted_multi / "onnx.png"))
    assert len(np.unique(a)) > 1  # a real mask: a wrong class order or channel mix-up would show
    assert a.shape == b.shape == (37, 43) and (a == b).mean() >= 0.999


def test_deploy_example_needs_only_the_onnx_file(fitted_binary: Path, binary_data: Path) -> None:
    """examples/deploy_onnx.py (numpy + OpenCV + ORT, no segcli) writes the mask segcli writes."""
    _export(fitted_binary, "-o", "dep.onnx")
    img = _odd_image(sorted((binary_data / "images").iterdir())[0], fitted_binary / "odd" / "b.png")
    r = run_cli(["predict", img, "--model", "dep.onnx", "-o", "segcli.png"], cwd=fitted_binary)
    assert r.code == 0, r.err
    want = np.array(Image.open(fitted_binary / "segcli.png"))
    assert set(np.unique(want)) == {0, 255}  # a real mask, not one class everywhere
    for extra in ([], ["--opencv"]):
        out = fitted_binary / f"example{len(extra)}.png"
        p = subprocess.run([sys.executable, str(ROOT / "examples" / "deploy_onnx.py"), "dep.onnx", str(img), str(out),
                            *extra], cwd=fitted_binary, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        got = np.array(Image.open(out))
        assert got.shape == want.shape and (got == want).mean() >= 0.999


def test_verification_failure_exits_1_and_writes_nothing(trained_binary: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import segcli.infer.export as ex

    real = ex.run_onnx
    monkeypatch.setattr(ex, "run_onnx", lambda *a, **k: real(*a, **k) + 1e-3)  # a broken exporter
    r = run_cli(["export", "-o", "bad.onnx"], cwd=trained_binary)
    assert r.code == 1 and "differs from PyTorch by 0.001" in r.err and "Traceback" not in r.err
    assert not (trained_binary / "bad.onnx").exists()
    r = run_cli(["export", "-o", "loose.onnx", "--tolerance", "0.01"], cwd=trained_binary)
    assert r.code == 0 and (trained_binary / "loose.onnx").is_file()
    (trained_binary / "exports").mkdir()
    r = run_cli(["export", "-f", "onnx", "-o", "exports", "--tolerance", "0.01"], cwd=trained_binary)
    assert r.code == 0 and (trained_binary / "exports" / "best.onnx").is_file(), r.err


def test_bad_input_is_one_line_exit_2(trained_binary: Path, tmp_path: Path) -> None:
    import onnx

    junk = tmp_path / "junk.pt"
    junk.write_text("not a model")
    (tmp_path / "junk.onnx").write_text("not a model")
    onnx_path, _ = _export(trained_binary, "-o", "meta.onnx")
    proto = onnx.load(str(onnx_path))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "nometa.onnx"))
    img = save_png(tmp_path / "img.png", np.zeros((8, 8, 3), np.uint8))
    cases = [
        (["export", "-m", junk], "junk.pt"),
        (["export", "--format", "tflite"], "expected onnx or torchscript"),
        (["export", "-f", "torchscript", "-o", "x.onnx"], "x.onnx"),
        (["export", "-f", "onnx", "-o", "x.bin"], "must end in .onnx"),
        (["export", "--tolerance", "-1"], "--tolerance"),
        (["predict", img, "--model", tmp_path / "junk.onnx", "-o", tmp_path / "o.png"], "not a loadable ONNX model"),
        (["predict", img, "--model", tmp_path / "nometa.onnx", "-o", tmp_path / "o.png"], "without segcli metadata"),
    ]
    for args, text in cases:
        r = run_cli(args, cwd=trained_binary)
        assert r.code == 2 and text in r.err, (args, r.err)
        assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
