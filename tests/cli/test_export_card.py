"""The export card: a .pt and the .onnx exported from it tile alike, predict alike and describe alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import run_cli, save_png


def _export(work: Path, name: str) -> Path:
    r = run_cli(["export", "-o", name], cwd=work)
    assert r.code == 0, r.err
    return work / name


def _mosaic(data: Path, dst: Path, rows: int = 4, cols: int = 5) -> Path:
    """A large image made of the dataset's own tiles (real shapes to find): 192x240 from 48x48 images."""
    tiles = [np.array(Image.open(p).convert("RGB")) for p in sorted((data / "images").iterdir())]
    grid = [np.concatenate([tiles[(r * cols + c) % len(tiles)] for c in range(cols)], 1) for r in range(rows)]
    return save_png(dst, np.concatenate(grid, 0))


def test_pt_and_onnx_make_the_same_tiling_decision_and_masks(fitted_binary: Path, binary_data: Path,
                                                             tmp_path: Path) -> None:
    from segcli.infer.options import InferenceOptions
    from segcli.infer.predictor import load_predictor

    onnx = _export(fitted_binary, "card.onnx")
    pt = next(fitted_binary.glob("runs/train/*/weights/best.pt"))
    image = _mosaic(binary_data, tmp_path / "large.png")
    h, w = np.array(Image.open(image)).shape[:2]
    preds = [load_predictor(p, InferenceOptions(precision="32")) for p in (pt, onnx)]
    assert preds[0].train_size == preds[1].train_size == 32  # the training patch (--img-size 32) travels
    tiles = [p.tile_for(h, w) for p in preds]
    assert tiles[0] == tiles[1] == 64  # a side over 4x the patch: tiles of twice the patch, both
    masks = []
    for model in (pt, onnx):
        out = tmp_path / f"{model.suffix[1:]}.png"
        r = run_cli(["predict", image, "-m", model, "-o", out, "--precision", "32"], cwd=fitted_binary)
        assert r.code == 0, r.err
        masks.append(np.array(Image.open(out)))
    assert set(np.unique(masks[0])) == {0, 255}  # a real mask: a mix-up of tiles would show
    assert masks[0].shape == (h, w) and (masks[0] == masks[1]).mean() >= 0.999


def _facts(d: dict) -> dict:
    """What `info --json` says about the model itself (not about the file holding it)."""
    keys = ("task", "num_classes", "classes", "ignore_index", "in_channels", "bands", "display_bands", "out_channels",
            "normalization", "train_size", "threshold", "training", "data", "best", "judges")
    facts = {k: d.get(k) for k in keys}
    facts["training"] = {k: v for k, v in (d.get("training") or {}).items() if k != "resumable"}
    facts["architecture"] = {k: v for k, v in d["architecture"].items() if not k.endswith("parameters")}
    q = d.get("quality_estimator") or {}
    facts["quality_estimator"] = {k: q.get(k) for k in ("target", "calibration")}
    return facts


def test_info_shows_the_same_facts_for_pt_and_onnx(fitted_multi: Path) -> None:
    onnx = _export(fitted_multi, "facts.onnx")
    pt = json.loads(run_cli(["info", "--json"], cwd=fitted_multi).out)
    ex = json.loads(run_cli(["info", onnx, "--json"], cwd=fitted_multi).out)
    assert _facts(pt) == _facts(ex)
    assert pt["train_size"] == 32 and pt["training"]["epochs_run"] >= 1 and pt["best"]["val_mIoU"] > 0
    assert ex["judges"]["discriminator"] == pt["judges"]["discriminator"] and ex["judges"]["quality_estimate"]
    assert ex["quality_estimator"]["file"] == "facts.quality.onnx" and ex["export"]["weights_dtype"] == "float32"
    for model in ("runs/train/exp", onnx):  # and the table says it too
        r = run_cli(["info", model], cwd=fitted_multi)
        assert r.code == 0 and "judges" in r.out and "training patch (32 px)" in r.out, r.out


def test_card_round_trips_and_older_files_still_load(fitted_binary: Path, tmp_path: Path) -> None:
    import onnx as onnxlib

    from segcli.checkpoint import Checkpoint
    from segcli.infer.card import ModelCard
    from segcli.infer.onnxrt import read_onnx_metadata
    from segcli.infer.predictor import load_predictor

    path = _export(fitted_binary, "trip.onnx")
    ckpt = Checkpoint.load(next(fitted_binary.glob("runs/train/*/weights/best.pt")))
    meta = read_onnx_metadata(path)
    card = ModelCard.from_json(meta, str(path))
    assert card.to_json() == meta  # what is written is what is read, key for key
    assert card.train_size == ckpt.train.img_size and card.judges == ckpt.judges()
    assert card.info == ckpt.data and card.output == ckpt.output and card.architecture == ckpt.model
    # a file from before the card (metadata version 1: no training patch) loads and tiles by size alone
    proto = onnxlib.load(str(path))
    old = {k: v for k, v in meta.items() if k not in ("train_size", "judges", "training", "data_summary", "best")}
    old["metadata_version"] = 1
    proto.metadata_props[0].value = json.dumps(old)
    onnxlib.save(proto, str(tmp_path / "old.onnx"))
    pred = load_predictor(tmp_path / "old.onnx")
    assert pred.train_size is None and pred.tile_for(192, 240) == 0
