"""The Python API: segcli.load(path).predict(path | PIL image | ndarray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segcli
from segcli.errors import UserError
from tests.conftest import run_cli


def test_predict_accepts_path_pil_and_array(fitted_multi: Path, multiclass_data: Path) -> None:
    model = segcli.load(fitted_multi / "runs/train/exp")
    assert model.classes == ["background", "shape1", "shape2", "shape3"] and not model.binary
    img = sorted((multiclass_data / "val/images").iterdir())[0]
    a = model.predict(img)
    b = model.predict(Image.open(img))
    c = model.predict(np.asarray(Image.open(img)))
    d = model.predict(np.asarray(Image.open(img)).astype(np.float32) / 255)  # floats in 0..1
    assert a.shape == (40, 56) and a.dtype == np.uint8 and a.max() < 4 and len(np.unique(a)) > 1
    assert (a == b).all() and (a == c).all() and (a == d).mean() > 0.99
    mask, probs = model.predict(str(img), probs=True)
    assert probs.shape == (4, 40, 56) and np.allclose(probs.sum(0), 1, atol=2e-3)  # float16 probabilities
    top2 = np.sort(probs, 0)
    clear = top2[-1] - top2[-2] > 0.01  # a 1-epoch model has near-ties that float16 rounding can flip
    assert clear.any() and (probs.argmax(0) == mask)[clear].all()


def test_matches_the_cli_and_onnx(fitted_binary: Path, binary_data: Path) -> None:
    img = sorted((binary_data / "images").iterdir())[0]
    assert run_cli(["predict", img, "-o", "api_cli.png", "--precision", "32"], cwd=fitted_binary).code == 0
    cli_mask = np.array(Image.open(fitted_binary / "api_cli.png"))
    model = segcli.load(fitted_binary / "runs/train/exp/weights/best.pt", precision="32")
    mask, probs = model(img, probs=True)
    assert model.binary and set(np.unique(mask)) == {0, 1} and probs.shape == (2, 48, 48)
    assert ((mask * 255) == cli_mask).mean() > 0.99  # the CLI writes 0/255, the API class indices
    assert run_cli(["export", "-o", "api.onnx"], cwd=fitted_binary).code == 0
    onnx = segcli.load(fitted_binary / "api.onnx")
    assert (onnx.predict(img) == mask).mean() > 0.99
    gray = np.asarray(Image.open(img).convert("L"))  # a gray image for an RGB model is repeated to 3 channels
    assert model.predict(gray).shape == (48, 48)
    assert len(model.predict([img, img])) == 2


def test_api_errors_are_user_errors(trained_binary: Path, tmp_path: Path) -> None:
    model = segcli.load(trained_binary / "runs/train/exp")
    with pytest.raises(UserError, match="shape"):
        model.predict(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(UserError, match="missing.png"):
        model.predict(tmp_path / "missing.png")
    with pytest.raises(UserError, match="no trained model"):
        import os

        old = os.getcwd()
        os.chdir(tmp_path)
        try:
            segcli.load()
        finally:
            os.chdir(old)


def test_load_takes_predict_options_and_threshold_changes_a_copy(fitted_binary: Path, binary_data: Path) -> None:
    img = sorted((binary_data / "images").iterdir())[0]
    model = segcli.load(fitted_binary / "runs/train/exp", precision="32", tile=0, tta=True)
    assert model._predictor.tile == 0 and model._predictor.tta and model.threshold == 0.5
    _, probs = model.predict(img, probs=True)
    model.threshold = 0.9
    assert model.threshold == 0.9 and (model.predict(img) == (probs[1] > 0.9)).mean() > 0.99
    with pytest.raises(UserError, match="--threshold"):
        model.threshold = 2.0
