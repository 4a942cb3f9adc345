"""Multi-band TIFF stacks: the band-axis rule, value types, band counts through the scan, display."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from segcli.data import prepare, read_image
from segcli.data.io import image_size, normalize, to_float
from segcli.data.tiff import stack_header
from segcli.errors import DataError, UserError
from segcli.visualize import Display, overlay, parse_bands, to_display
from tests.data.formats.builders import make_multiband

BANDS = np.arange(6 * 9 * 11, dtype=np.uint16).reshape(6, 9, 11) * 100  # (C, H, W), every value distinct
HWC = BANDS.transpose(1, 2, 0)


@pytest.mark.parametrize("layout, kw, array", [
    ("pages CxHxW", {}, BANDS),
    ("planar CxHxW", {"photometric": "minisblack", "planarconfig": "separate"}, BANDS),
    ("interleaved HxWxC", {"photometric": "minisblack", "planarconfig": "contig"}, HWC),
    ("shaped HxWxC", {}, HWC),  # tifffile's default for an HxWxC array: pages of W x C, shape in metadata
])
def test_band_axis_rule(tmp_path: Path, layout: str, kw: dict, array: np.ndarray) -> None:
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, array, **kw)
    img = read_image(path)
    assert img.dtype == np.uint16 and np.array_equal(img, HWC), layout
    assert image_size(path) == (11, 9) and stack_header(path).bands == 6


def test_ordinary_pictures_stay_with_pil_and_four_bands_are_not_rgba(tmp_path: Path) -> None:
    rgb = (HWC[..., :3] % 256).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb)
    assert stack_header(tmp_path / "rgb.tif") is None and read_image(tmp_path / "rgb.tif").shape == (9, 11, 3)
    Image.fromarray(np.dstack([rgb, rgb[..., :1]]), "RGBA").save(tmp_path / "rgba.tif")
    assert read_image(tmp_path / "rgba.tif").shape == (9, 11, 3)  # marked alpha: dropped, as before
    tifffile.imwrite(tmp_path / "rgbn.tif", HWC[..., :4], photometric="minisblack", planarconfig="contig")
    assert read_image(tmp_path / "rgbn.tif").shape == (9, 11, 4)  # RGB + near infrared: four bands


def test_float_data_is_used_as_stored(tmp_path: Path) -> None:
    refl = np.linspace(-0.2, 1.7, 6 * 9 * 11, dtype=np.float32).reshape(6, 9, 11)
    tifffile.imwrite(tmp_path / "f.tif", refl)
    img = read_image(tmp_path / "f.tif")
    assert img.dtype == np.float32 and np.array_equal(img, refl.transpose(1, 2, 0))
    assert np.array_equal(to_float(img), img) and to_float(img) is not img  # no rescaling, and a copy
    x = normalize(img, [0.5] * 6, [2.0] * 6)  # CxHxW again
    assert np.allclose(x, (refl - 0.5) / 2.0)
    tifffile.imwrite(tmp_path / "i16.tif", (refl * 1000).astype(np.int16))  # signed: float32 as stored
    assert read_image(tmp_path / "i16.tif").dtype == np.float32
    refl[2, 1, 1] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", refl)
    with pytest.raises(DataError, match="nan.tif: holds NaN"):
        read_image(tmp_path / "nan.tif")


def test_scan_gives_the_band_count_and_refuses_mixed_counts(tmp_path: Path) -> None:
    data = make_multiband(tmp_path / "d", bands=6, count=4)
    prep = prepare(str(data), 0.25, 0, None)
    assert prep.info.in_channels == 6 and prep.info.binary
    tifffile.imwrite(data / "images" / "tile03.tif", np.zeros((5, 32, 32), np.uint16))
    with pytest.raises(DataError, match="tile03.tif: 5 band\\(s\\), but tile00.tif has 6"):
        prepare(str(data), 0.25, 0, None)


def test_bands_choose_what_is_shown() -> None:
    assert parse_bands("3,2,1", 6) == [3, 2, 1] and parse_bands("4") == [4]
    for bad in ("3,2", "0,1,2", "a", "7,1,1"):
        with pytest.raises(UserError, match="--bands"):
            parse_bands(bad, 6)
    img = np.zeros((10, 10, 6), np.uint16)
    img[..., 4] = np.arange(100, dtype=np.uint16).reshape(10, 10) * 50  # only band 5 varies
    shown = to_display(img, [5, 5, 1])
    assert shown.shape == (10, 10, 3) and shown[..., 2].max() == 0  # band 1 is flat: black
    assert shown[..., 0].min() == 0 and shown[..., 0].max() == 255  # band 5 stretched 2%-98%
    assert np.array_equal(shown[..., 0], shown[..., 1])
    # one image is stretched alike whichever rows an overlay works through
    labels = np.zeros((10, 10), np.uint8)
    assert np.array_equal(overlay(img, labels, True, rows=3, bands=[5, 5, 1]), shown)
    rgb16 = np.full((2, 2, 3), 257 * 10, np.uint16)  # gray / RGB images keep their own scale
    assert Display(rgb16)(rgb16).max() == 10.0
