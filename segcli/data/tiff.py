"""Multi-band TIFF stacks (multispectral, hyperspectral, multi-channel microscopy), read with tifffile.

Which TIFFs come here: every one that is not an ordinary picture. A single-page 8/16-bit gray,
RGB, RGBA (alpha marked as such), CMYK or palette TIFF is read by PIL like any other image;
everything else (more bands, a band per page, float or signed data) is a stack.

The band rule (docs/data-formats.md): the band axis is the one the file names (samples per
pixel, interleaved `HxWxC` or planar `CxHxW`; an ImageJ/OME channel axis); without a name (a
stack of pages, or a shape stored by tifffile) it is the shortest of the three axes, so both
`(C, H, W)` and `(H, W, C)` arrays saved with `tifffile.imwrite` read back right.

Values: uint8 and uint16 stay as they are (scaled to [0, 1] by 255 / 65535 like any image);
float and other integer data are used as stored, as float32: no rescaling, the per-band mean and
std of the training images normalise them. NaN or infinite values are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from segcli.errors import DataError

TIFF_EXTS = (".tif", ".tiff")
_ALPHA = (1, 2)  # ExtraSamples: associated / unassociated alpha
_PHOTO_PIL = (3, 5, 6)  # palette, CMYK (separated), YCbCr: PIL converts them to RGB


@dataclass(frozen=True)
class StackHeader:
    width: int
    height: int
    bands: int
    dtype: str  # as stored: uint8, uint16, float32, int16, ...
    band_axis: int  # in the squeezed array
    shape: tuple[int, ...]  # squeezed shape

    @property
    def mode(self) -> str:
        """What `segcli check` lists as the image's mode."""
        return f"{self.bands}-band {self.dtype}"


def _squeeze(shape: tuple[int, ...], axes: str) -> tuple[tuple[int, ...], str]:
    keep = [i for i, (n, a) in enumerate(zip(shape, axes)) if n > 1 or a in "YX"]
    return tuple(shape[i] for i in keep), "".join(axes[i] for i in keep)


def _is_picture(shape: tuple[int, ...], axes: str, dtype: np.dtype, page: Any) -> bool:
    """An ordinary single-page picture PIL reads (and has always read) as gray, RGB or RGBA."""
    if dtype not in (np.uint8, np.uint16, np.bool_) or len(shape) not in (2, 3):
        return False
    if axes == "YX":
        return True
    if axes != "YXS":
        return False
    samples = shape[2]
    alpha = any(int(e) in _ALPHA for e in (page.extrasamples or ()))
    return samples == 3 or (samples in (2, 4) and alpha) or int(page.photometric) in _PHOTO_PIL


def _band_axis(shape: tuple[int, ...], axes: str, path: Path) -> int:
    if len(shape) == 2:
        return -1
    if len(shape) != 3:
        raise DataError(f"{path}: a {len(shape)}-D TIFF ({axes} {shape}); segcli reads one image of bands: "
                        "HxW, HxWxC or CxHxW")
    named = [i for i, a in enumerate(axes) if a in "SC"]
    return named[0] if len(named) == 1 else int(np.argmin(shape))


def stack_header(path: Path) -> Optional[StackHeader]:
    """The header of a TIFF stack; None for an ordinary picture, or for a file tifffile cannot parse
    (PIL then reads it, or says why it cannot)."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series, page = tif.series[0], tif.pages[0]
            shape, axes = _squeeze(tuple(series.shape), series.axes)
            dtype = np.dtype(series.dtype)
            picture = len(tif.pages) == 1 and _is_picture(shape, axes, dtype, page)
    except Exception:
        return None
    if picture:
        return None
    axis = _band_axis(shape, axes, path)
    spatial = [n for i, n in enumerate(shape) if i != axis % len(shape)] if axis >= 0 else list(shape)
    return StackHeader(spatial[1], spatial[0], shape[axis] if axis >= 0 else 1, dtype.name, axis, shape)


def read_stack(path: Path, header: StackHeader) -> np.ndarray:
    """A TIFF stack as HxWxC: uint8 / uint16 as stored, anything else float32 as stored."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            arr = tif.series[0].asarray()
    except Exception as e:
        raise DataError(f"{path}: cannot read TIFF stack ({type(e).__name__}: {e}); re-save it or remove it") from None
    arr = arr.reshape(header.shape)
    arr = arr[:, :, None] if header.band_axis < 0 else np.moveaxis(arr, header.band_axis, -1)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype not in (np.uint8, np.uint16):
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise DataError(f"{path}: holds NaN or infinite values (no-data?); fill them, e.g. with 0, and save again")
    return np.ascontiguousarray(arr)


def is_tiff(path: Path) -> bool:
    return path.suffix.lower() in TIFF_EXTS
