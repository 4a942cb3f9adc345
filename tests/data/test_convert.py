"""`segcli convert`: each format as the plain layout, holding exactly the masks segcli learns from."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from segcli.data.convert import convert
from segcli.data.discovery import read_class_colors, read_classes
from segcli.data.doctor import check_dataset
from segcli.errors import UserError
from tests.data.formats.builders import make_cityscapes, make_coco, make_voc

BUILDERS: dict[str, Callable[[Path], dict[str, np.ndarray]]] = {
    "coco": make_coco, "coco-one-file": lambda p: make_coco(p, split=False), "voc": make_voc,
    "voc-colour": lambda p: make_voc(p, colour=True), "cityscapes": make_cityscapes,
}


def _stem(name: str) -> str:
    return Path(name).stem


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_converted_masks_are_the_expected_ones(tmp_path: Path, kind: str) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = BUILDERS[kind](src)
    result = convert(src, dst)
    masks = sorted(dst.rglob("masks/*.png"))
    assert {m.stem for m in masks} == {_stem(n) for n in expected}
    for m in masks:
        assert np.array_equal(np.asarray(Image.open(m)), expected[next(n for n in expected if _stem(n) == m.stem)])
    images = sorted(dst.rglob("images/*"))
    originals = {p.name: p.read_bytes() for p in src.rglob("*") if p.name in expected}
    assert all(p.read_bytes() == originals[p.name] for p in images)  # copied, not re-encoded
    assert read_classes(dst) == result.classes
    if kind in ("voc", "cityscapes"):
        assert read_class_colors(dst)[:2] == ([[0, 0, 0], [128, 0, 0]] if kind == "voc" else
                                              [[128, 64, 128], [244, 35, 232]])
    layout = "flat" if kind == "coco-one-file" else "split"
    assert result.layout == layout and (dst / "images").is_dir() == (layout == "flat")


@pytest.mark.parametrize("kind", ["coco", "coco-one-file", "voc", "cityscapes"])
def test_check_reports_the_same_on_a_format_and_on_its_conversion(tmp_path: Path, kind: str) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    BUILDERS[kind](src)
    convert(src, dst)
    a, b = check_dataset(src).to_dict(), check_dataset(dst).to_dict()
    assert a["format"] == kind.split("-")[0] and b["format"] == "plain"
    for d in (a, b):
        del d["data"], d["format"]
    assert a == b and a["ok"]


def test_convert_never_writes_into_a_used_folder(tmp_path: Path) -> None:
    make_voc(tmp_path / "src")
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="dst: exists and is not an empty folder"):
        convert(tmp_path / "src", tmp_path / "dst")
    assert [p.name for p in (tmp_path / "dst").iterdir()] == ["keep.txt"]
