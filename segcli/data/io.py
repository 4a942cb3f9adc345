"""Reading images and masks from disk into numpy, with errors that name the file."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Optional, Protocol, Union, runtime_checkable

import numpy as np
from PIL import Image, ImageOps

from segcli.data.tiff import is_tiff, read_stack, stack_header
from segcli.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
# Internal label value for pixels that count in neither loss nor metrics.
IGNORE = 255

Image.MAX_IMAGE_PIXELS = None  # large microscopy / aerial images are legitimate input


@runtime_checkable
class MaskSource(Protocol):
    """A mask that is not a class-index image file as it stands: a COCO image's polygons, a
    Cityscapes labelIds file that needs its id mapping, a colour-coded VOC mask.

    Formats hand these to the rest of segcli in place of a path, so that scanning, checking,
    training, evaluation and conversion all decode a mask the same way, through `read_mask`.
    `str()` names it in error messages; `path` is the file it comes from.
    """

    path: Path

    def read(self) -> np.ndarray:
        """HxW integer class values (255 = ignore), as `read_mask` returns for a file."""
        ...


MaskRef = Union[Path, MaskSource]


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS and not path.name.startswith(".")


def _open(path: Path | BinaryIO, what: str, name: Optional[str] = None) -> Image.Image:
    """Decode fully (so damage shows here, not later), EXIF orientation applied; `name` stands
    for the source in messages when it is not a path (an uploaded body)."""
    where = name or path
    try:
        with warnings.catch_warnings(record=True) as caught:  # PIL warns (not raises) on some damage
            warnings.simplefilter("always")
            im = Image.open(path)
            im.load()
            if im.getexif().get(0x0112, 1) not in (0, 1):  # upright already: skip exif_transpose's copy
                im = ImageOps.exif_transpose(im)
        truncated = [w for w in caught if "truncated" in str(w.message).lower()]
        if truncated:  # e.g. a cut TIFF decodes with missing rows: refuse rather than learn from zeros
            raise OSError(str(truncated[0].message))
        return im
    except FileNotFoundError:
        raise DataError(f"{where}: {what} not found") from None
    except Exception as e:  # PIL raises many types for broken files
        raise DataError(
            f"{where}: cannot read {what} ({type(e).__name__}: {e}); re-save it as PNG or remove it"
        ) from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header alone, EXIF orientation applied."""
    stack = stack_header(path) if is_tiff(path) else None
    if stack is not None:
        return stack.width, stack.height
    try:
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore")  # damaged EXIF: orientation 1, the rest is checked on decode
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except Exception as e:
        raise DataError(f"{path}: cannot read image header ({type(e).__name__}: {e}); "
                        "re-save it (e.g. as PNG) or remove it") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def image_mode(path: Path) -> str:
    """What `segcli check` lists as an image's mode: PIL's (L, RGB, I;16, ...) or a stack's (6-band uint16)."""
    stack = stack_header(path) if is_tiff(path) else None
    if stack is not None:
        return stack.mode
    with Image.open(path) as im:
        return im.mode


def read_image(path: Path) -> np.ndarray:
    """An image as HxWxC: uint8 or uint16 with C in {1, 3} (alpha dropped, palette expanded), or a
    TIFF stack's bands, any C, uint8 / uint16 / float32 (segcli.data.tiff)."""
    stack = stack_header(path) if is_tiff(path) else None
    if stack is not None:
        return read_stack(path, stack)
    return _image_array(_open(path, "image"))


def decode_image(data: bytes, name: str = "upload") -> np.ndarray:
    """Encoded image bytes (e.g. an HTTP upload) to exactly the array `read_image` gives for
    the same file, so a served mask equals the one `segcli predict` writes."""
    if data[:4] in (b"II*\x00", b"MM\x00*"):  # a TIFF: maybe a multi-band stack
        stack = stack_header(io.BytesIO(data))
        if stack is not None:
            return read_stack(io.BytesIO(data), stack)
    return _image_array(_open(io.BytesIO(data), "image", name))


def _image_array(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(im).astype(np.uint16)
    elif mode in ("I", "F"):
        arr = np.asarray(im)
        lo, hi = float(arr.min()), float(arr.max())
        if mode == "I" and lo >= 0 and hi <= 65535:
            arr = arr.astype(np.uint16)
        else:  # arbitrary range: stretch to 16 bits
            arr = ((arr - lo) / max(hi - lo, 1e-12) * 65535).astype(np.uint16)
    elif mode in ("1", "L", "LA"):
        arr = np.asarray(im if mode == "L" else im.convert("L"))
    else:
        arr = np.asarray(im if mode == "RGB" else im.convert("RGB"))
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr)


def read_mask(path: MaskRef) -> np.ndarray:
    """A mask as HxW integer class values, exactly as stored (no mapping yet); a format's
    MaskSource decodes itself."""
    if not isinstance(path, (str, os.PathLike)):
        return path.read()
    return read_mask_file(Path(path))


def read_mask_file(path: Path) -> np.ndarray:
    """A class-index image file (grayscale, palette, 16-bit) as HxW integer values."""
    im = _open(path, "mask")
    if im.mode == "1":
        return np.asarray(im, dtype=np.uint8) * 255
    if im.mode in ("P", "L"):
        return np.asarray(im)
    if im.mode.startswith("I"):
        arr = np.asarray(im)
        if arr.min() < 0 or arr.max() > 65535:
            raise DataError(f"{path}: mask values outside 0-65535; store class indices")
        return arr.astype(np.uint16)
    if im.mode in ("LA",):
        return np.asarray(im.convert("L"))
    if im.mode in ("RGB", "RGBA"):
        arr = np.asarray(im.convert("RGB"))
        if (arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all():
            return np.ascontiguousarray(arr[..., 0])
        raise DataError(
            f"{path}: colour (RGB) mask; save masks as single-channel class indices "
            "(grayscale or palette PNG)"
        )
    raise DataError(f"{path}: unsupported mask mode {im.mode}; save it as a grayscale PNG")


def fits_channels(c: int, channels: int) -> bool:
    """Whether a c-band image can feed a model of `channels` inputs (gray and RGB convert)."""
    return c == channels or {c, channels} == {1, 3}


def check_channels(arr: np.ndarray, channels: int, path: object) -> np.ndarray:
    """The decoded image, or a DataError naming the file when its band count does not fit the model."""
    if not fits_channels(arr.shape[2], channels):
        raise DataError(f"{path}: {arr.shape[2]} band(s), but the model takes {channels}")
    return arr


def to_channels(arr: np.ndarray, channels: int) -> np.ndarray:
    """Match a decoded HxWxC image to the model's channel count."""
    c = arr.shape[2]
    if c == channels:
        return arr
    if channels == 3 and c == 1:
        return np.repeat(arr, 3, axis=2)
    if channels == 1 and c == 3:  # luminance, as PIL's "L" conversion
        lum = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        out = lum if arr.dtype.kind == "f" else lum.round().astype(arr.dtype)
        return out[:, :, None]
    raise DataError(f"an image of {c} band(s) cannot feed a model of {channels} input channels")


def pixel_scale(dtype: np.dtype) -> float:
    """What a pixel value is divided by before normalisation: 255, 65535, or 1 for float data
    (used as stored; the per-band statistics normalise it)."""
    return 65535.0 if dtype == np.uint16 else 1.0 if np.dtype(dtype).kind == "f" else 255.0


def to_float(arr: np.ndarray) -> np.ndarray:
    """uint8/uint16 HxWxC to float32 in [0, 1]; float data as stored (always a new array)."""
    return arr.astype(np.float32) / pixel_scale(arr.dtype)


def normalize(image: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """A decoded HxWxC image to a model input: CxHxW float32, (pixel / max - mean) / std (max: 255,
    65535, or 1 for float data).

    The one normalisation of inference and validation (training applies the same statistics at
    the end of its augmentation, segcli.data.transforms).
    """
    x = to_float(image)
    x -= np.asarray(mean, np.float32)
    x /= np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def encode_mask(raw: np.ndarray, binary: bool, ignore_index: int | None) -> np.ndarray:
    """Stored mask values to training labels: 0..K-1, IGNORE for ignored pixels."""
    ignored = raw == ignore_index if ignore_index is not None else None
    if binary:
        labels = (raw > 0).astype(np.uint8)
    else:
        labels = raw.astype(np.uint8) if raw.dtype != np.uint8 else raw.copy()
    if ignored is not None:
        labels[ignored] = IGNORE
    return labels
