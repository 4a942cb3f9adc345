"""Pascal VOC: ImageSets splits, palette masks as class indices (255 = void), colour masks via labelmap.txt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segcli.data import discover, eval_samples, prepare, read_mask
from segcli.data.formats.voc import CLASSES, voc_palette
from segcli.errors import DataError
from tests.data.formats.builders import make_voc


def test_palette_masks_and_imagesets_splits(tmp_path: Path) -> None:
    expected = make_voc(tmp_path)
    s = discover(tmp_path)
    assert s.format == "voc" and s.layout == "split" and len(s.train) == 4 and len(s.val) == 2
    assert s.classes == CLASSES and s.colors[15] == [192, 128, 128]  # person, in VOC's own palette
    for x in s.train + s.val:
        assert np.array_equal(read_mask(x.mask), expected[x.image.name]), x.image.name
    assert [x.image.name for x in eval_samples(tmp_path)] == [x.image.name for x in s.val]
    info = prepare(str(tmp_path), 0.2, 0, None).info
    assert info.num_classes == 21 and info.ignore_index == 255 and not info.binary


def test_voc_palette_is_the_devkit_one() -> None:
    pal = voc_palette(21)
    assert pal[:4] == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]] and pal[20] == [0, 64, 128]


def test_colour_masks_through_labelmap(tmp_path: Path) -> None:
    expected = make_voc(tmp_path, colour=True)
    s = discover(tmp_path)
    assert s.classes == ["background", "road", "tree"] and s.colors[1] == [128, 64, 128]
    for x in s.train + s.val:
        assert np.array_equal(read_mask(x.mask), expected[x.image.name]), x.image.name


def test_unknown_colour_and_missing_files_are_named(tmp_path: Path) -> None:
    make_voc(tmp_path, colour=True)
    base = tmp_path / "VOCdevkit" / "VOC2012"
    bad = base / "SegmentationClass" / "2007_000001.png"
    rgb = np.asarray(Image.open(bad)).copy()
    rgb[3, 7] = (1, 2, 3)
    Image.fromarray(rgb).save(bad)
    with pytest.raises(DataError, match=r"2007_000001.png: colour \(1, 2, 3\) at x=7, y=3 is not a class colour of .*labelmap.txt"):
        for x in discover(tmp_path).train:
            read_mask(x.mask)
    (base / "JPEGImages" / "2007_000002.jpg").unlink()
    with pytest.raises(DataError, match=r"train.txt: '2007_000002' has no image"):
        discover(tmp_path)
    (base / "labelmap.txt").write_text("road:1,2\n")
    with pytest.raises(DataError, match=r"labelmap.txt: line 1: expected name:R,G,B"):
        discover(tmp_path)


def test_without_imagesets_every_mask_is_a_sample(tmp_path: Path) -> None:
    make_voc(tmp_path, count=5)
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    for f in (voc / "ImageSets" / "Segmentation").iterdir():
        f.unlink()
    s = discover(voc, 0.2, seed=0)  # the VOC2012 folder itself works too
    assert s.layout == "flat" and len(s.train) + len(s.val) == 5 and len(s.val) == 1
