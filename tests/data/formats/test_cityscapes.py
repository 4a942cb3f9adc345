"""Cityscapes: gtFine labelIds mapped to the 19 train ids, everything else ignored (255)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segcli.data import discover, eval_samples, prepare, read_mask
from segcli.data.formats.cityscapes import TRAIN_IDS, label_lut
from segcli.errors import DataError
from tests.data.formats.builders import make_cityscapes


def test_label_ids_become_train_ids(tmp_path: Path) -> None:
    expected = make_cityscapes(tmp_path)
    s = discover(tmp_path)
    assert s.format == "cityscapes" and s.layout == "split" and len(s.train) == 4 and len(s.val) == 2
    assert len(s.classes) == 19 and s.classes[13] == "car" and s.colors[0] == [128, 64, 128]
    for x in s.train + s.val:
        assert np.array_equal(read_mask(x.mask), expected[x.image.name]), x.image.name
    assert [x.image.name for x in eval_samples(tmp_path)] == [x.image.name for x in s.val]
    info = prepare(str(tmp_path), 0.2, 0, None).info
    assert info.num_classes == 19 and info.ignore_index == 255


def test_the_mapping_table() -> None:
    lut = label_lut()
    assert sorted(TRAIN_IDS.values()) == list(range(19))
    assert lut[7] == 0 and lut[33] == 18 and lut[0] == 255 and lut[29] == 255 and lut[255] == 255


def test_missing_labels_and_foreign_ids_are_named(tmp_path: Path) -> None:
    make_cityscapes(tmp_path)
    mask = next((tmp_path / "gtFine" / "val").rglob("*_labelIds.png"))
    Image.fromarray(np.full((32, 40), 40, np.uint8)).save(mask)
    with pytest.raises(DataError, match=r"_gtFine_labelIds.png: value 40 at x=0, y=0 is not a Cityscapes label id"):
        for x in discover(tmp_path).val:
            read_mask(x.mask)
    mask.unlink()
    with pytest.raises(DataError, match=r"_leftImg8bit.png: no fine labels"):
        discover(tmp_path)
