"""--config FILE: YAML or TOML, command line wins, a run's saved config.yaml reproduces the run."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml

from tests.conftest import TINY, run_cli


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _same(a: Path, b: Path) -> None:
    ra, rb = _rows(a), _rows(b)
    assert len(ra) == len(rb)
    for x, y in zip(ra, rb):
        for k in ("g_loss", "d_loss", "val_mIoU", "val_Dice"):
            assert x[k] == y[k], k


def test_saved_config_reproduces_the_run(binary_data: Path, tmp_path: Path) -> None:
    flags = ["train", binary_data, "--epochs", "2", "--seed", "7", "--class-weights", "auto", *TINY, "--name", "flags"]
    assert run_cli(flags, cwd=tmp_path).code == 0
    saved = tmp_path / "runs/train/flags/config.yaml"
    # no DATA, no options: everything comes from the saved file (DATA included); only the name differs
    r = run_cli(["train", "--config", saved, "--name", "again"], cwd=tmp_path)
    assert r.code == 0, r.err
    assert "ignoring unknown" not in r.err
    _same(tmp_path / "runs/train/flags", tmp_path / "runs/train/again")
    again = yaml.safe_load((tmp_path / "runs/train/again/config.yaml").read_text())
    assert again["train"]["seed"] == 7 and again["train"]["class_weights"] == "auto"


def test_toml_config_and_command_line_wins(binary_data: Path, tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(
        'epochs = 3\nseed = 2\nbase-channels = 4\ndepth = 2\nimg_size = 32\nprecision = 32\nlr = 0.002\n'
    )
    r = run_cli(["train", binary_data, "--config", "c.toml", "--epochs", "1", "--name", "t"], cwd=tmp_path)
    assert r.code == 0, r.err
    saved = yaml.safe_load((tmp_path / "runs/train/t/config.yaml").read_text())["train"]
    assert saved["epochs"] == 1 and saved["seed"] == 2 and saved["precision"] == "32" and saved["lr_g"] == 0.002


def test_config_errors_are_one_line(binary_data: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("epochs: many\n")
    r = run_cli(["train", binary_data, "--config", "bad.yaml"], cwd=tmp_path)
    assert r.code == 2 and "bad.yaml" in r.err and "epochs" in r.err and "Traceback" not in r.err
    (tmp_path / "broken.yaml").write_text("epochs: [1\n")
    r = run_cli(["train", binary_data, "--config", "broken.yaml"], cwd=tmp_path)
    assert r.code == 2 and "cannot parse" in r.err
    r = run_cli(["train", binary_data, "--config", "absent.yaml"], cwd=tmp_path)
    assert r.code == 2 and "absent.yaml" in r.err
    (tmp_path / "typo.yaml").write_text("epochs: 1\nepocs: 3\n")
    r = run_cli(["train", binary_data, "--config", "typo.yaml", *TINY], cwd=tmp_path)
    assert r.code == 0 and "epocs" in r.err  # a warning names the unknown key


def test_config_file_for_predict_evaluate_export(trained_binary: Path, binary_data: Path, tmp_path: Path) -> None:
    import json

    (tmp_path / "p.yaml").write_text("overlay: true\nthreshold: 0.4\n")
    r = run_cli(["predict", binary_data / "images", "-o", tmp_path / "out", "--config", tmp_path / "p.yaml"],
                cwd=trained_binary)
    assert r.code == 0, r.err
    assert len(list((tmp_path / "out").glob("*_overlay.png"))) == len(list((binary_data / "images").iterdir()))
    (tmp_path / "e.toml").write_text("json = true\n")
    r = run_cli(["evaluate", binary_data, "--config", tmp_path / "e.toml"], cwd=trained_binary)
    assert r.code == 0 and "mIoU" in json.loads(r.out)
    (tmp_path / "x.yaml").write_text("format: torchscript\n")
    r = run_cli(["export", "-o", tmp_path / "m.ts", "--config", tmp_path / "x.yaml"], cwd=trained_binary)
    assert r.code == 0, r.err
    assert (tmp_path / "m.ts").is_file()
