"""`--quality` end to end: predict (JSON, error maps, worst first, review folder), the exported
.onnx, evaluate's trust figures against a direct computation, the API, and models without an
estimator (older checkpoints)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segcli.data.io import encode_mask, read_mask
from segcli.infer.quality import trust_figures
from segcli.metrics import auroc, aurc, image_quality, spearman
from tests.conftest import run_cli


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.strip().splitlines()]


def test_predict_quality_sorted_with_error_maps_and_review(fitted_multi: Path, multiclass_data: Path,
                                                           tmp_path: Path) -> None:
    images = multiclass_data / "val" / "images"
    out = tmp_path / "out"
    r = run_cli(["predict", images, "--quality", "--json", "--sort-by", "quality", "-o", out, "--review", "2"],
                cwd=fitted_multi)
    assert r.code == 0, r.err
    lines = _lines(r.out)
    qualities = [line["quality"] for line in lines]
    assert len(lines) == len(list(images.iterdir())) and qualities == sorted(qualities)  # worst first
    assert all(0.0 <= q <= 1.0 for q in qualities) and len(set(qualities)) > 1
    for line in lines:
        error = np.array(Image.open(line["error_map"]))
        mask = Image.open(line["output"])
        assert error.dtype == np.uint8 and error.shape == mask.size[::-1] and Path(line["error_map"]).parent == out
    assert "estimated mIoU: mean" in r.err and "2 image(s) to review" in r.err
    listed = json.loads((out / "review" / "review.json").read_text())
    assert [e["quality"] for e in listed] == qualities[:2]
    for entry in listed:
        for key in ("image", "mask", "overlay", "error_map"):
            assert Path(entry[key]).is_file()
    assert len(list((out / "review").iterdir())) == 2 * 4 + 1
    plain = run_cli(["predict", images, "--json", "-o", tmp_path / "plain"], cwd=fitted_multi)
    assert "quality" not in _lines(plain.out)[0] and not list((tmp_path / "plain").glob("*_error.png"))
    # the masks do not depend on --quality
    first = Path(lines[0]["output"]).name
    assert np.array_equal(np.array(Image.open(out / first)), np.array(Image.open(tmp_path / "plain" / first)))


def test_overlay_outlines_the_suspect_regions(fitted_binary: Path, binary_data: Path, tmp_path: Path) -> None:
    img = sorted((binary_data / "images").iterdir())[0]
    for q in ([], ["--quality"]):
        r = run_cli(["predict", img, "-o", tmp_path / f"m{len(q)}.png", "--overlay", *q], cwd=fitted_binary)
        assert r.code == 0, r.err
    plain = np.array(Image.open(tmp_path / "m0_overlay.png"))
    marked = np.array(Image.open(tmp_path / "m1_overlay.png"))
    error = np.array(Image.open(tmp_path / "m1_error.png"))
    changed = (plain != marked).any(-1)
    assert changed.any() == (error >= 128).any()
    assert np.all(marked[changed] == (255, 230, 0)) and np.all(error[changed] >= 128)  # outlines inside the regions


def test_onnx_export_carries_the_estimator(fitted_binary: Path, binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["export", "-o", tmp_path / "m.onnx"], cwd=fitted_binary)
    assert r.code == 0, r.err
    assert (tmp_path / "m.quality.onnx").is_file() and "quality estimator" in r.err
    got = {}
    for model in ("m.onnx", None):
        extra = ["--model", tmp_path / model] if model else ["--precision", "32"]
        r = run_cli(["predict", binary_data / "images", "--quality", "--json", "-o", tmp_path / f"out_{model}", *extra],
                    cwd=fitted_binary)
        assert r.code == 0, r.err
        got[model] = {Path(line["input"]).name: line for line in _lines(r.out)}
    for name, line in got["m.onnx"].items():
        assert line["quality"] == pytest.approx(got[None][name]["quality"], abs=2e-3)
        a, b = (np.array(Image.open(got[k][name]["error_map"])).astype(int) for k in ("m.onnx", None))
        assert np.abs(a - b).max() <= 1
    (tmp_path / "m.quality.onnx").rename(tmp_path / "away.onnx")
    r = run_cli(["predict", binary_data / "images", "--model", tmp_path / "m.onnx", "--quality", "-o", tmp_path / "x"],
                cwd=fitted_binary)
    assert r.code == 2 and "m.quality.onnx is missing" in r.err and len(r.err.strip().splitlines()) == 1


def test_evaluate_trust_figures_match_a_direct_computation(fitted_multi: Path, multiclass_data: Path,
                                                           tmp_path: Path) -> None:
    r = run_cli(["evaluate", multiclass_data, "--quality", "--json"], cwd=fitted_multi)
    assert r.code == 0, r.err
    q = json.loads(r.out)["quality"]
    p = run_cli(["predict", multiclass_data / "val" / "images", "--quality", "--json", "-o", tmp_path], cwd=fitted_multi)
    by_name = {Path(line["input"]).name: line for line in _lines(p.out)}
    est, true, acc = [], [], []
    for row in q["per_image"]:
        line = by_name[row["image"]]
        labels = np.array(Image.open(line["output"]))
        truth = encode_mask(read_mask(multiclass_data / "val" / "masks" / row["image"]), False, 255)
        quality, accuracy = image_quality(labels, truth, 4, binary=False)
        assert row["estimate"] == line["quality"] and row["quality"] == pytest.approx(quality)
        est.append(line["quality"]), true.append(quality), acc.append(accuracy)
    est, true, acc = map(np.array, (est, true, acc))
    e = q["estimate"]
    assert q["target"] == "mIoU" and q["images"] == len(est) == len(by_name) == 2
    assert e["spearman_quality"] == pytest.approx(spearman(est, true), abs=1e-4)
    assert e["spearman_accuracy"] == pytest.approx(spearman(est, acc), abs=1e-4)
    assert e["mae"] == pytest.approx(np.abs(est - true).mean(), abs=1e-4)
    assert e["aurc"] == pytest.approx(aurc(est, 1 - true), abs=1e-4)
    for base in ("max_softmax", "neg_entropy"):
        b = np.array([row[base] for row in q["per_image"]])
        assert q[base]["spearman_quality"] == pytest.approx(spearman(b, true), abs=1e-4)
    assert 0.0 <= e["pixel_auroc"] <= 1.0 and 0.0 <= q["neg_entropy"]["pixel_auroc"] <= 1.0 and q["pixels"] > 1000
    table = run_cli(["evaluate", multiclass_data, "--quality"], cwd=fitted_multi)
    assert table.code == 0 and "how far the quality estimate can be trusted" in table.out


def test_trust_figures_on_synthetic_rows() -> None:
    rng = np.random.default_rng(0)
    quality = rng.random(30)
    rows = [{"image": str(i), "quality": float(t), "accuracy": float(0.5 + t / 2), "estimate": float(t + 0.1),
             "max_softmax": float(-t), "neg_entropy": float(rng.random())} for i, t in enumerate(quality)]
    rows.append({"image": "unlabelled", "quality": float("nan"), "accuracy": float("nan"), "estimate": 0.5,
                 "max_softmax": 0.5, "neg_entropy": 0.5})
    wrong = rng.random(500) < 0.3
    err = np.where(wrong, 200, 20).astype(np.uint8)
    ent = rng.random(500).astype(np.float32)
    f = trust_figures(rows, {"error": err, "entropy": ent, "wrong": wrong}, "mIoU")
    assert f["images"] == 30  # the image without labelled pixels is left out
    assert f["estimate"]["spearman_quality"] == 1.0 and f["estimate"]["mae"] == pytest.approx(0.1)
    assert f["max_softmax"]["spearman_quality"] == -1.0
    assert f["estimate"]["aurc"] == f["oracle_aurc"] == pytest.approx(aurc(quality, 1 - quality), abs=1e-4)
    assert f["estimate"]["pixel_auroc"] == 1.0
    assert f["neg_entropy"]["pixel_auroc"] == pytest.approx(auroc(ent, wrong), abs=1e-4)


def test_api_returns_the_estimate_and_the_error_map(fitted_binary: Path, binary_data: Path, tmp_path: Path) -> None:
    import segcli

    img = sorted((binary_data / "images").iterdir())[1]
    model = segcli.load(fitted_binary / "runs" / "train" / "exp", precision="32")
    assert model.has_estimator
    mask, q, err = model.predict(img, quality=True)
    mask2, probs, q2, err2 = model.predict(img, probs=True, quality=True)
    assert err.dtype == np.float32 and err.shape == mask.shape and 0 <= err.min() <= err.max() <= 1
    assert q == q2 and np.array_equal(err, err2) and np.array_equal(mask, mask2) and probs.shape[0] == 2
    r = run_cli(["predict", img, "--quality", "--json", "--precision", "32", "-o", tmp_path / "m.png"], cwd=fitted_binary)
    line = _lines(r.out)[0]
    assert q == line["quality"]
    assert np.array_equal(np.rint(err * 255).astype(np.uint8), np.array(Image.open(line["error_map"])))
    assert np.array_equal(model.predict(img), mask)  # quality off again


def _strip_estimator(src: Path, dst: Path) -> Path:
    """A checkpoint as segcli wrote it before the estimator existed."""
    state = torch.load(src, weights_only=True)
    for key in ("estimator", "estimator_config", "opt_e", "calibration"):
        state.pop(key, None)
    state["train"].pop("quality", None)
    torch.save(state, dst)
    return dst


def test_older_checkpoints_predict_and_say_they_hold_no_estimator(fitted_binary: Path, binary_data: Path,
                                                                 tmp_path: Path) -> None:
    import segcli
    from segcli.errors import UserError

    old = _strip_estimator(next(fitted_binary.glob("runs/train/*/weights/best.pt")), tmp_path / "old.pt")
    img = sorted((binary_data / "images").iterdir())[0]
    r = run_cli(["predict", img, "--model", old, "-o", tmp_path / "m.png"])
    assert r.code == 0, r.err
    for args in (["predict", img, "--model", old, "--quality", "-o", tmp_path / "q.png"],
                 ["predict", img, "--model", old, "--sort-by", "quality", "-o", tmp_path / "q.png"],
                 ["evaluate", binary_data, "--model", old, "--quality"]):
        r = run_cli(args)
        assert r.code == 2 and r.err.count("\n") == 1 and "holds no quality estimator" in r.err, r.err
        assert "retrain" in r.err and not (tmp_path / "q.png").exists()
    with pytest.raises(UserError, match="no quality estimator"):
        segcli.load(old).predict(img, quality=True)
    r = run_cli(["export", "--model", old, "-o", tmp_path / "old.onnx"])
    assert r.code == 0 and not (tmp_path / "old.quality.onnx").exists()
    r = run_cli(["predict", img, "--model", tmp_path / "old.onnx", "--quality", "-o", tmp_path / "q.png"])
    assert r.code == 2 and "holds no quality estimator" in r.err


def test_bad_quality_options(fitted_binary: Path, binary_data: Path) -> None:
    for args, message in ((["--sort-by", "size"], "--sort-by size"), (["--review", "-1"], "--review -1")):
        r = run_cli(["predict", binary_data / "images", "-o", "x", *args], cwd=fitted_binary)
        assert r.code == 2 and message in r.err
