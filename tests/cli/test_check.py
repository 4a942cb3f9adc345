"""`segcli check`: the dataset doctor, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from segcli.data.synthetic import make_dataset
from tests.conftest import TINY, run_cli, save_png


def test_check_clean_dataset_prints_histogram_and_exits_0(multiclass_data: Path) -> None:
    r = run_cli(["check", multiclass_data])
    assert r.code == 0, r.err
    for needle in ("split layout", "background", "shape3", "pixel share", "images", "no problems found", "suggested: segcli train"):
        assert needle in r.out, needle
    assert "error" not in r.err


def test_check_json_is_pure_and_matches_the_data(binary_data: Path) -> None:
    r = run_cli(["check", binary_data, "--json"])
    assert r.code == 0, r.err
    report = json.loads(r.out)  # the whole of stdout is one JSON document
    assert report["ok"] and report["binary"] and report["splits"] == {"train": 8, "val": 2}
    assert report["images"]["count"] == 10 and report["images"]["min_size"] == [48, 48]
    shares = [c["share"] for c in report["classes"]]
    assert len(shares) == 2 and abs(sum(shares) - 1) < 1e-9 and all(c["images"] > 0 for c in report["classes"])
    assert report["suggestions"]["img_size"] == 32 and len(report["suggestions"]["class_weights"]) == 2


def test_check_names_every_bad_file_in_one_run(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "d", count=8, size=(40, 40), classes=2)
    masks = sorted((data / "masks").iterdir())
    broken, missing, small = masks[0], masks[1], masks[2]
    broken.write_bytes(b"not a png")
    missing.unlink()
    save_png(small, np.zeros((20, 20), np.uint8))
    r = run_cli(["check", data])
    assert r.code == 2
    errors = [ln for ln in r.err.splitlines() if ln.startswith("error:")]
    assert any(str(broken) in ln and "cannot read mask" in ln for ln in errors)
    assert any(str(data / "images" / missing.name) in ln and "without a mask" in ln for ln in errors)
    assert any(str(small) in ln and "20x20" in ln for ln in errors)
    assert "3 problem(s) in 3 file(s)" in errors[-1] and "Traceback" not in r.err
    j = run_cli(["check", data, "--json"])
    assert j.code == 2
    files = {f for p in json.loads(j.out)["problems"] for f in p["files"]}
    assert {str(broken), str(small), str(data / "images" / missing.name)} == files
    # train refuses the same dataset (it stops at the first problem)
    t = run_cli(["train", data, "--epochs", "1", *TINY], cwd=tmp_path)
    assert t.code == 2


def test_check_value_outside_classes_names_each_mask_and_the_fix(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "d", count=6, size=(32, 32), classes=3, classes_file=True)
    bad = sorted((data / "masks").iterdir())[:2]
    for m in bad:
        arr = np.zeros((32, 32), np.uint8)
        arr[:4] = 7  # a "void" value not in classes.txt
        save_png(m, arr)
    r = run_cli(["check", data, "--json"])
    assert r.code == 2
    (problem,) = json.loads(r.out)["problems"]
    assert sorted(problem["files"]) == [str(m) for m in bad] and "--ignore-index 7" in problem["message"]
    ok = run_cli(["check", data, "--ignore-index", "7"])
    assert ok.code == 0, ok.err
    assert "ignore index 7" in ok.out and "--ignore-index 7" in ok.out  # in the suggested train command


def test_check_warns_about_imbalance_and_small_objects(tmp_path: Path) -> None:
    data = tmp_path / "d"
    rng = np.random.default_rng(0)
    for i in range(6):
        save_png(data / "images" / f"{i}.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        m = np.zeros((64, 64), np.uint8)
        m[10:13, 10:13] = 255  # 9 of 4096 pixels
        save_png(data / "masks" / f"{i}.png", m)
    r = run_cli(["check", data])
    assert r.code == 0, r.err
    assert "heavy class imbalance" in r.out and "small objects" in r.out and "--class-weights auto" in r.out


def test_check_reads_config_and_quiet(tmp_path: Path, multiclass_data: Path) -> None:
    (tmp_path / "c.yaml").write_text(f"data: {multiclass_data}\ncheck:\n  ignore-index: 9\n")
    r = run_cli(["check", "--config", "c.yaml", "--json"], cwd=tmp_path)
    assert r.code == 0, r.err
    assert json.loads(r.out)["ignore_index"] == 9
    (tmp_path / "c.toml").write_text('ignore_index = "x"\n')
    bad = run_cli(["check", multiclass_data, "--config", "c.toml"], cwd=tmp_path)
    assert bad.code == 2 and "c.toml" in bad.err and "ignore_index" in bad.err
    q = run_cli(["check", multiclass_data, "-q"])
    assert q.code == 0 and q.out == ""


def test_check_accepts_a_runs_saved_config(trained_binary: Path, binary_data: Path) -> None:
    saved = trained_binary / "runs/train/exp/config.yaml"
    assert yaml.safe_load(saved.read_text())["train"]["data"] == str(binary_data)
    r = run_cli(["check", "--config", saved, "--json"])
    assert r.code == 0, r.err
    assert json.loads(r.out)["data"] == str(binary_data) and "ignoring unknown" not in r.err


def test_check_missing_folder_and_no_validation(tmp_path: Path, binary_data: Path) -> None:
    r = run_cli(["check", tmp_path / "nope"])
    assert r.code == 2 and str(tmp_path / "nope") in r.err and "Traceback" not in r.err
    r = run_cli(["check", binary_data, "--val-split", "0"])
    assert r.code == 2 and "no validation images" in r.err


def test_check_sees_what_train_saw(trained_multi: Path, multiclass_data: Path) -> None:
    import torch

    ckpt = torch.load(trained_multi / "runs/train/exp/weights/last.pt", weights_only=True)
    report = json.loads(run_cli(["check", multiclass_data, "--json"]).out)
    assert [c["train_pixels"] for c in report["classes"]] == ckpt["data_summary"]["class_pixels"]
    assert report["num_classes"] == ckpt["data_info"]["num_classes"]
    assert report["images"]["in_channels"] == ckpt["data_info"]["in_channels"]
    assert report["splits"]["train"] == ckpt["data_summary"]["train_images"]
