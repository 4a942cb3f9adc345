"""`segcli evaluate`: its numbers agree with torchmetrics on the masks `segcli predict` writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.classification import (
    MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score, MulticlassJaccardIndex,
    MulticlassPrecision, MulticlassRecall,
)

from segcli.data.synthetic import make_dataset
from tests.conftest import FIT, run_cli


def _reference(pred_dir: Path, mask_dir: Path, k: int, binary: bool, ignore: int | None) -> dict:
    """torchmetrics over all pixels of all images (as one confusion matrix accumulates them)."""
    preds, truths = [], []
    for m in sorted(mask_dir.iterdir()):
        p = np.array(Image.open(pred_dir / f"{m.stem}.png")).astype(np.int64)
        t = np.array(Image.open(m)).astype(np.int64)
        if binary:
            p, t = p // 255, t // 255
        preds.append(torch.from_numpy(p.ravel()))
        truths.append(torch.from_numpy(t.ravel()))
    pred, truth = torch.cat(preds), torch.cat(truths)
    kw = {"num_classes": k, "ignore_index": ignore}
    cm = MulticlassConfusionMatrix(**kw)(pred, truth)
    present = ((cm.sum(0) + cm.sum(1)) > 0).numpy()
    per = {name: fn(**kw, average="none")(pred, truth).numpy()
           for name, fn in (("iou", MulticlassJaccardIndex), ("dice", MulticlassF1Score),
                            ("precision", MulticlassPrecision), ("recall", MulticlassRecall))}
    return {"present": present, "per": per, "mIoU": per["iou"][present].mean(), "mDice": per["dice"][present].mean(),
            "acc": float(MulticlassAccuracy(**kw, average="micro")(pred, truth))}


def _compare(result: dict, ref: dict) -> None:
    assert result["mIoU"] == pytest.approx(ref["mIoU"], abs=1e-3)
    assert result["mDice"] == pytest.approx(ref["mDice"], abs=1e-3)
    assert result["pixel_accuracy"] == pytest.approx(ref["acc"], abs=1e-3)
    for c, row in enumerate(result["per_class"]):
        if not ref["present"][c]:
            assert row["absent"] and row["iou"] is None and row["dice"] is None
            continue
        assert not row["absent"]
        for key in ("iou", "dice", "precision", "recall"):
            assert row[key] == pytest.approx(float(ref["per"][key][c]), abs=1e-3), (c, key)


def test_binary_evaluate_agrees_with_torchmetrics(fitted_binary: Path, binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["predict", binary_data / "images", "-o", tmp_path / "pred"], cwd=fitted_binary)
    assert r.code == 0, r.err
    r = run_cli(["evaluate", binary_data, "--json"], cwd=fitted_binary)
    assert r.code == 0, r.err
    result = json.loads(r.out)
    assert [c["name"] for c in result["per_class"]] == ["background", "foreground"] and result["images"] == 10
    ref = _reference(tmp_path / "pred", binary_data / "masks", 2, True, None)
    assert ref["present"].all() and 0.5 < result["mIoU"] < 1  # a real model, both classes present
    _compare(result, ref)


def test_multiclass_evaluate_with_ignored_pixels_agrees_with_torchmetrics(
    fitted_multi: Path, multiclass_data: Path, tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    shutil.copytree(multiclass_data, data)
    for m in (data / "val" / "masks").iterdir():  # a band of unlabelled pixels: the checkpoint's ignore index
        arr = np.array(Image.open(m))
        arr[5:12] = 255
        Image.fromarray(arr).save(m)
    r = run_cli(["predict", data / "val" / "images", "-o", tmp_path / "pred"], cwd=fitted_multi)
    assert r.code == 0, r.err
    r = run_cli(["evaluate", data, "--json", "--save-dir", tmp_path / "ev"], cwd=fitted_multi)
    assert r.code == 0, r.err
    result = json.loads(r.out)
    assert result["ignore_index"] == 255
    ref = _reference(tmp_path / "pred", data / "val" / "masks", 4, False, 255)
    _compare(result, ref)
    # --save-dir: the same masks predict wrote, the JSON, and a confusion-matrix image
    for m in (tmp_path / "pred").glob("*.png"):
        assert (np.array(Image.open(tmp_path / "ev" / "masks" / m.name)) == np.array(Image.open(m))).all()
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["mIoU"] == result["mIoU"] and saved["confusion_matrix"] == result["confusion_matrix"]
    assert Image.open(tmp_path / "ev" / "confusion_matrix.png").size[0] > 200
    # ignored pixels count nowhere: the confusion matrix holds exactly the labelled pixels
    labelled = sum(int((np.array(Image.open(m)) != 255).sum()) for m in (data / "val" / "masks").iterdir())
    assert int(np.sum(result["confusion_matrix"])) == labelled


def test_absent_class_is_reported_absent_and_left_out_of_means(tmp_path: Path) -> None:
    """classes.txt names a 4th class that no mask holds: not 0, not 1, but absent, and out of the means."""
    data = make_dataset(tmp_path / "d", count=10, size=(48, 48), classes=3)
    (data / "classes.txt").write_text("background\na\nb\nnever\n")
    r = run_cli(["train", data, *FIT], cwd=tmp_path)
    assert r.code == 0, r.err
    r = run_cli(["evaluate", data, "--json", "--save-dir", tmp_path / "ev"], cwd=tmp_path)
    assert r.code == 0, r.err
    result = json.loads(r.out)
    never = result["per_class"][3]
    assert never["name"] == "never" and never["absent"] and never["iou"] is None and never["pixels"] == 0
    ref = _reference(tmp_path / "ev" / "masks", data / "masks", 4, False, 255)
    assert not ref["present"][3]
    _compare(result, ref)
    assert result["mIoU"] == pytest.approx(np.mean([c["iou"] for c in result["per_class"][:3]]))
    table = run_cli(["evaluate", data], cwd=tmp_path)
    assert table.code == 0 and "absent" in table.out and "never" in table.out


def test_evaluate_shares_predict_options(fitted_binary: Path, binary_data: Path, tmp_path: Path) -> None:
    """--tta, --tile and --threshold produce in evaluate exactly the masks they produce in predict."""
    opts = ["--tta", "--tile", "32", "--threshold", "0.3", "--precision", "32"]
    r = run_cli(["predict", binary_data / "images", "-o", tmp_path / "pred", *opts], cwd=fitted_binary)
    assert r.code == 0, r.err
    r = run_cli(["evaluate", binary_data, "--json", "--save-dir", tmp_path / "ev", *opts], cwd=fitted_binary)
    assert r.code == 0, r.err
    for m in (tmp_path / "pred").glob("*.png"):
        a = np.array(Image.open(m)) // 255
        assert (np.array(Image.open(tmp_path / "ev" / "masks" / m.name)) // 255 == a).all()
    _compare(json.loads(r.out), _reference(tmp_path / "pred", binary_data / "masks", 2, True, None))


def test_evaluate_table_and_bad_mask(fitted_multi: Path, multiclass_data: Path, tmp_path: Path) -> None:
    r = run_cli(["evaluate", multiclass_data], cwd=fitted_multi)
    assert r.code == 0, r.err
    assert "mean" in r.out and "pixel accuracy" in r.out and "shape3" in r.out
    data = tmp_path / "bad"
    shutil.copytree(multiclass_data, data)
    bad = sorted((data / "val" / "masks").iterdir())[0]
    Image.fromarray(np.full((10, 10), 1, np.uint8)).save(bad)  # wrong size for its image
    r = run_cli(["evaluate", data, "--json"], cwd=fitted_multi)
    assert r.code == 2 and str(bad) in r.err and "Traceback" not in r.err and r.out == ""
