"""Data: layouts, pairing, mask kinds, image kinds, transforms that never interpolate masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segcli.config import DataInfo
from segcli.data import IGNORE, discover, prepare, read_image, read_mask
from segcli.data.dataset import SegDataset
from segcli.data.transforms import train_transforms
from segcli.errors import DataError
from tests.conftest import save_png


def test_flat_layout_seeded_split(binary_data: Path) -> None:
    a = discover(binary_data, 0.2, seed=1)
    b = discover(binary_data, 0.2, seed=1)
    c = discover(binary_data, 0.2, seed=2)
    assert len(a.val) == 2 and len(a.train) == 8
    assert a.val == b.val and a.val != c.val
    assert all(s.mask.stem == s.image.stem for s in a.train + a.val)


def test_split_layout_and_classes(multiclass_data: Path) -> None:
    s = discover(multiclass_data)
    assert s.layout == "split" and s.classes == ["background", "shape1", "shape2", "shape3"]
    prep = prepare(str(multiclass_data), 0.2, 0, None)
    assert not prep.info.binary and prep.info.num_classes == 4 and prep.info.ignore_index == 255


def test_binary_detection_and_mapping(binary_data: Path) -> None:
    prep = prepare(str(binary_data), 0.2, 0, None)
    assert prep.info.binary and prep.info.out_channels == 1 and prep.info.ignore_index is None


def test_pairing_by_stem_with_other_extension(tmp_path: Path) -> None:
    save_png(tmp_path / "images" / "a.png", np.zeros((8, 8, 3), np.uint8))
    save_png(tmp_path / "masks" / "a.png", np.zeros((8, 8), np.uint8))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / "b.jpg")
    save_png(tmp_path / "masks" / "b.png", np.full((8, 8), 255, np.uint8))
    s = discover(tmp_path, 0.5)
    assert sorted(x.image.name for x in s.train + s.val) == ["a.png", "b.jpg"]


def test_missing_mask_is_named(tmp_path: Path) -> None:
    save_png(tmp_path / "images" / "a.png", np.zeros((8, 8, 3), np.uint8))
    save_png(tmp_path / "images" / "lonely.png", np.zeros((8, 8, 3), np.uint8))
    save_png(tmp_path / "masks" / "a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="lonely.png"):
        discover(tmp_path)


def test_palette_and_16bit_and_gray_inputs(tmp_path: Path) -> None:
    m = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), "P")
    m.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    m.save(tmp_path / "p.png")
    assert read_mask(tmp_path / "p.png").tolist() == [[0, 1], [2, 1]]
    Image.fromarray(np.array([[0, 65535]], np.uint16)).save(tmp_path / "i16.png")
    img = read_image(tmp_path / "i16.png")
    assert img.dtype == np.uint16 and img.shape == (1, 2, 1) and img.max() == 65535
    Image.fromarray(np.zeros((3, 4, 4), np.uint8), "RGBA").save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png").shape == (3, 4, 3)


def test_exif_orientation_applied(tmp_path: Path) -> None:
    im = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90
    im.save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").shape[:2] == (20, 10)


def test_rgb_colour_mask_rejected(tmp_path: Path) -> None:
    arr = np.zeros((4, 4, 3), np.uint8)
    arr[0, 0] = (255, 0, 0)
    save_png(tmp_path / "m.png", arr)
    with pytest.raises(DataError, match="colour"):
        read_mask(tmp_path / "m.png")


def test_value_outside_classes_names_file(multiclass_data: Path, tmp_path: Path) -> None:
    import shutil

    d = tmp_path / "d"
    shutil.copytree(multiclass_data, d)
    bad = sorted((d / "train" / "masks").iterdir())[0]
    arr = np.array(Image.open(bad))
    arr[0, 0] = 9
    Image.fromarray(arr).save(bad)
    with pytest.raises(DataError, match=bad.name):
        prepare(str(d), 0.2, 0, None)


def test_transforms_never_interpolate_masks(multiclass_data: Path) -> None:
    info = DataInfo(num_classes=4, in_channels=3, binary=False, ignore_index=255)
    s = discover(multiclass_data)
    ds = SegDataset(s.train, info, train_transforms(64, info.mean, info.std, 3, True))
    torch.manual_seed(0)
    for i in range(len(ds)):
        img, mask = ds[i]
        assert img.shape == (3, 64, 64) and mask.shape == (64, 64)
        assert set(torch.unique(mask).tolist()) <= {0, 1, 2, 3, IGNORE}
    # padding (patch 64 > image 40x56) is filled with the ignore label
    assert (mask == IGNORE).any()


def test_no_augment_is_crops_and_flips_only() -> None:
    from torchvision.transforms import v2

    from segcli.data.transforms import RandomScaleCrop, train_transforms

    full = train_transforms(32, [0.5], [0.2], 1, False)
    plain = train_transforms(32, [0.5], [0.2], 1, False, augment=False)
    assert any(isinstance(t, v2.ColorJitter) for t in full.transforms)
    kinds = [type(t) for t in plain.transforms]
    assert kinds == [RandomScaleCrop, v2.RandomHorizontalFlip, v2.Normalize]
    assert plain.transforms[0].scale == (1.0, 1.0)
