"""COCO: the masks segcli derives equal hand-drawn ones; class order, overlaps, crowds, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segcli.data import discover, eval_samples, read_mask
from segcli.data.formats import detect
from segcli.errors import DataError
from tests.data.formats.builders import COCO_CLASSES, make_coco


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("coco")
    return root, make_coco(root)


def _masks(samples: list) -> dict[str, np.ndarray]:
    return {s.image.name: read_mask(s.mask) for s in samples}


def test_masks_equal_the_hand_drawn_ones(coco: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, expected = coco
    splits = discover(root)
    assert detect(root) == "coco" and splits.format == "coco" and splits.layout == "split"
    assert [s.image.name for s in splits.train] == ["a.png", "b.png", "c.png", "d.png"]
    assert [s.image.name for s in splits.val] == ["e.png", "f.png"]
    got = _masks(splits.train + splits.val)
    for name, want in expected.items():
        assert np.array_equal(got[name], want), name
    # non-contiguous category ids 3 and 7, listed out of order, become classes 1 and 2 by id
    assert splits.classes == COCO_CLASSES


def test_overlap_crowd_and_empty_image_rules(coco: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = coco
    got = _masks(discover(root).train)
    assert got["b.png"][12, 14] == 2  # the small dog on top of the large cat, though listed first
    assert got["c.png"][31, 39] == 255 and got["c.png"][25, 8] == 2  # crowd ignored, instance kept over it
    assert not got["d.png"].any()  # no annotations: background


def test_one_annotation_file_is_split_like_the_plain_layout(tmp_path: Path) -> None:
    expected = make_coco(tmp_path, split=False)
    a, b = discover(tmp_path, 0.2, seed=1), discover(tmp_path, 0.2, seed=1)
    assert a.layout == "flat" and len(a.train) == 5 and len(a.val) == 1 and a.val == b.val
    assert {k: v.tolist() for k, v in _masks(a.train + a.val).items()} == {k: v.tolist() for k, v in expected.items()}
    assert [s.image.name for s in eval_samples(tmp_path)] == sorted(expected)  # evaluate: every image


def test_images_found_in_the_split_folder_coco_uses(tmp_path: Path) -> None:
    make_coco(tmp_path)
    (tmp_path / "train").mkdir()
    for name in "abcd":  # COCO's own layout: train2017/ beside annotations/instances_train2017.json
        (tmp_path / "images" / f"{name}.png").rename(tmp_path / "train" / f"{name}.png")
    s = discover(tmp_path)
    assert [x.image.parent.name for x in s.train] == ["train"] * 4
    assert [x.image.name for x in eval_samples(tmp_path)] == ["e.png", "f.png"]  # evaluate: the val file


def _edit(root: Path, fn) -> Path:
    path = root / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["annotations"][0].update(category_id=99), r"annotation 11\d: category_id 99 is not in 'categories'"),
    (lambda d: d["annotations"][1].update(segmentation={"size": [5, 5], "counts": "abc"}), r"annotation 11\d: RLE size"),
    (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3]]), r"annotation 11\d: a polygon must be"),
    (lambda d: d["images"][0].update(file_name="missing.png"), r"image id 1: 'missing.png' not found"),
    (lambda d: d["annotations"][0].update(image_id=42), r"annotation 11\d: image_id 42 is not an image"),
])
def test_parsing_errors_name_the_file_and_annotation(tmp_path: Path, edit, message: str) -> None:
    make_coco(tmp_path)
    path = _edit(tmp_path, edit)
    with pytest.raises(DataError, match=message) as e:
        s = discover(tmp_path)
        for x in s.train:
            read_mask(x.mask)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_broken_json_and_ambiguous_files(tmp_path: Path) -> None:
    make_coco(tmp_path)
    (tmp_path / "annotations" / "instances_train.json").write_text("{not json")
    with pytest.raises(DataError, match="instances_train.json: not a readable COCO JSON"):
        discover(tmp_path)
    other = tmp_path / "other"
    make_coco(other, split=False)
    (other / "annotations" / "more.json").write_text("{}")
    with pytest.raises(DataError, match="name them instances_train"):
        discover(other)


def test_roboflow_export_layout(tmp_path: Path) -> None:
    expected = make_coco(tmp_path / "src")
    for part, json_name, names in (("train", "instances_train.json", "abcd"), ("valid", "instances_val.json", "ef")):
        (tmp_path / "rf" / part).mkdir(parents=True)
        (tmp_path / "src" / "annotations" / json_name).rename(tmp_path / "rf" / part / "_annotations.coco.json")
        for n in names:
            (tmp_path / "src" / "images" / f"{n}.png").rename(tmp_path / "rf" / part / f"{n}.png")
    s = discover(tmp_path / "rf")
    assert s.format == "coco" and [x.image.parent.name for x in s.train + s.val] == ["train"] * 4 + ["valid"] * 2
    assert all(np.array_equal(read_mask(x.mask), expected[x.image.name]) for x in s.train + s.val)
