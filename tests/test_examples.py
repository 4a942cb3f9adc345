"""Every script under examples/ runs (the quick start in a tiny configuration)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from segcli.data.synthetic import make_dataset

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """PATH with `segcli` and `python` meaning this interpreter and this checkout."""
    bin_dir = tmp_path_factory.mktemp("bin")
    for name, cmd in (("segcli", f'exec "{sys.executable}" -m segcli "$@"'), ("python", f'exec "{sys.executable}" "$@"')):
        (bin_dir / name).write_text(f"#!/bin/sh\n{cmd}\n")
        (bin_dir / name).chmod(0o755)
    root = str(EXAMPLES.parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def _run(args: list, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    p = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def test_quickstart_tiny(env: dict, tmp_path: Path) -> None:
    tiny = {**env, "QS_COUNT": "8", "QS_SIZE": "48", "QS_EPOCHS": "1", "QS_WIDTH": "4", "QS_DEPTH": "2"}
    p = _run(["bash", EXAMPLES / "quickstart.sh", "qs"], tiny, tmp_path)
    work = tmp_path / "qs"
    assert (work / "runs/train/quickstart/weights/best.pt").is_file()
    assert len(list((work / "predictions").glob("*_overlay.png"))) == 8
    assert "no problems found" in p.stdout and "pixel accuracy" in p.stdout and "best val" in p.stdout


def test_batch_predict_mirrors_a_tree(env: dict, tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "d", count=6, size=(48, 48))
    assert _run([sys.executable, "-m", "segcli", "train", data, "--epochs", "1", "--base-channels", "4", "--depth", "2",
                 "--img-size", "32", "--precision", "32"], env, tmp_path).stdout.strip()
    tree = tmp_path / "tree"
    images = sorted((data / "images").iterdir())
    for i, img in enumerate(images):  # equal names in different folders
        dest = tree / ("a" if i < 3 else "b/c") / f"img{i % 3}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(img, dest)
    _run(["bash", EXAMPLES / "batch_predict.sh", tree, "out"], env, tmp_path)
    out = tmp_path / "out"
    for i in range(3):
        assert (out / "a" / f"img{i}.png").is_file() and (out / "b/c" / f"img{i}.png").is_file()
    lines = [json.loads(ln) for ln in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and all(ln["output"] for ln in lines)


def test_api_example(env: dict, tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "d", count=6, size=(48, 48), classes=3)
    run = _run([sys.executable, "-m", "segcli", "train", data, "--epochs", "1", "--base-channels", "4", "--depth", "2",
                "--img-size", "32", "--precision", "32"], env, tmp_path).stdout.strip()
    imgs = sorted((data / "images").iterdir())[:2]
    p = _run([sys.executable, EXAMPLES / "api_example.py", tmp_path / run, *imgs], env, tmp_path)
    assert "segcli.Model" in p.stdout and "class_0" in p.stdout and "mean confidence" in p.stdout
    p = _run([sys.executable, EXAMPLES / "api_example.py", imgs[0]], env, tmp_path)  # newest run by default
    assert str(imgs[0]) in p.stdout
