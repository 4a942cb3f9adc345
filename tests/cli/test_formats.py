"""COCO, VOC and Cityscapes folders straight into `train`, `evaluate`, `check` and `convert`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli
from tests.data.formats.builders import make_cityscapes, make_coco, make_voc

TINY2 = ["--base-channels", "4", "--depth", "2", "--batch-size", "2", "--img-size", "32", "--precision", "32"]


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("coco_cli") / "coco_dir"
    make_coco(root)
    return root


def test_coco_export_trains_evaluates_and_converts(coco_dir: Path, tmp_path: Path) -> None:
    r = run_cli(["train", coco_dir, "--epochs", "2", *TINY2, "--logger", "none"], cwd=tmp_path)
    assert r.code == 0, r.err
    run = Path(r.out.strip().splitlines()[-1])
    config = (tmp_path / run / "config.yaml").read_text()
    assert "- cat" in config and "- dog" in config and "num_classes: 3" in config
    ev = run_cli(["evaluate", coco_dir, "--json"], cwd=tmp_path)
    assert ev.code == 0, ev.err
    result = json.loads(ev.out)
    assert result["classes"] == ["background", "cat", "dog"] and result["images"] == 2  # the val file's images
    out = tmp_path / "plain"
    c = run_cli(["convert", coco_dir, out])
    assert c.code == 0, c.err
    assert c.out.strip() == str(out) and "COCO dataset" in c.err
    crowd = np.asarray(Image.open(out / "train" / "masks" / "c.png"))
    assert crowd[31, 39] == 255 and crowd[25, 8] == 2
    assert run_cli(["check", out]).code == 0


def test_check_names_the_format(coco_dir: Path) -> None:
    r = run_cli(["check", coco_dir])
    assert r.code == 0, r.err
    assert "COCO format, split layout, 4 train, 2 val images" in r.out and "3 classes" in r.out


def test_a_bad_annotation_is_a_one_line_exit_2(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    make_coco(root)
    path = root / "annotations" / "instances_val.json"
    data = json.loads(path.read_text())
    data["annotations"][2]["segmentation"] = {"counts": [1, 2], "size": [32, 40]}
    path.write_text(json.dumps(data))
    for args in (["train", root, "--epochs", "1", *TINY2], ["check", root], ["convert", root, tmp_path / "out"]):
        r = run_cli(args, cwd=tmp_path)
        lines = [ln for ln in r.err.splitlines() if ln.startswith("error:")]
        assert r.code == 2, (args, r.err)
        assert f"{path}: annotation {data['annotations'][2]['id']}: uncompressed RLE counts" in lines[0]
        assert "Traceback" not in r.err
    assert not (tmp_path / "out" / "classes.txt").exists()


@pytest.mark.parametrize("kind", ["voc", "cityscapes"])
def test_voc_and_cityscapes_train_and_evaluate(kind: str, tmp_path: Path) -> None:
    root = tmp_path / kind
    expected = (make_voc if kind == "voc" else make_cityscapes)(root)
    r = run_cli(["train", root, "--epochs", "1", *TINY2, "--logger", "none"], cwd=tmp_path)
    assert r.code == 0, r.err
    ev = run_cli(["evaluate", root, "--json"], cwd=tmp_path)
    assert ev.code == 0, ev.err
    result = json.loads(ev.out)
    assert result["images"] == 2 and result["ignore_index"] == 255
    assert len(result["classes"]) == (21 if kind == "voc" else 19)
    out = tmp_path / "plain"
    assert run_cli(["convert", root, out]).code == 0
    for name, want in expected.items():
        got = np.asarray(Image.open(next(out.rglob(f"masks/{Path(name).stem}.png"))))
        assert np.array_equal(got, want), name
