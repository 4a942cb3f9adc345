"""Requests in, answers out: reading a bounded body, checking and decoding the image, and
encoding the mask, the overlay and the JSON description.

Decoding goes through `segcli.data.io` and encoding through `segcli.infer.predict.mask_image`
and `segcli.visualize.overlay`, the code `segcli predict` uses, so a served mask carries the
bytes of the file predict writes. Every problem becomes a `RequestError`: an HTTP status and a
message naming it.
"""

from __future__ import annotations

import base64
import io
from typing import Any, AsyncIterator, Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from segcli.config import DataInfo
from segcli.data.io import decode_image
from segcli.errors import DataError
from segcli.infer.predict import class_fractions, mask_image
from segcli.visualize import overlay, overlay_palette

# What PIL calls the formats `segcli predict` reads (MPO: a phone camera's JPEG; DIB: a BMP).
FORMATS = {"PNG", "JPEG", "MPO", "TIFF", "BMP", "DIB", "WEBP"}
FORMAT_NAMES = "PNG, JPEG, TIFF, BMP or WebP"


class RequestError(Exception):
    """A request the server answers with an error: `status`, a message naming the problem,
    and a `reason` for the error counter in /metrics."""

    def __init__(self, status: int, message: str, reason: str, retry_after: Optional[int] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.reason, self.retry_after = status, message, reason, retry_after


def too_large(what: str) -> RequestError:
    return RequestError(413, what, "too_large")


async def _limited(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """The body's chunks, stopping with 413 once more than `limit` bytes arrived (a body sent
    without Content-Length cannot slip past the limit)."""
    n = 0
    async for chunk in chunks:
        n += len(chunk)
        if n > limit:
            raise too_large(f"request body over {limit} bytes; this server accepts at most {limit} (--max-body-mb)")
        yield chunk


async def read_body(request: Any, limit: int) -> bytes:
    """The image bytes of a request: the multipart field `file` (or the only file sent), or else
    the raw body, whatever its Content-Type."""
    from starlette.requests import ClientDisconnect

    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large(f"request body of {int(length)} bytes; this server accepts at most {limit} (--max-body-mb)")
    stream = _limited(request.stream(), limit)
    try:
        if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            data = await _multipart_file(request.headers, stream)
        else:
            data = b"".join([chunk async for chunk in stream])
    except ClientDisconnect:
        raise RequestError(400, "the client disconnected before the body arrived", "bad_request") from None
    if not data:
        raise RequestError(400, "empty body: send an image as the body or as the multipart field 'file'", "bad_request")
    return data


async def _multipart_file(headers: Any, stream: AsyncIterator[bytes]) -> bytes:
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    try:
        form = await MultiPartParser(headers, stream, max_files=4, max_fields=16).parse()
    except MultiPartException as e:
        raise RequestError(400, f"unreadable multipart body: {e.message}", "bad_request") from None
    try:
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        chosen = form.get("file") if isinstance(form.get("file"), UploadFile) else (files[0] if len(files) == 1 else None)
        if chosen is None:
            found = f"{len(files)} files" if files else "no file"
            raise RequestError(400, f"multipart body holds {found}; send one image in the field 'file'", "bad_request")
        return await chosen.read()
    finally:
        await form.close()


def check_image(data: bytes, max_pixels: int) -> int:
    """The image's pixel count from its header alone (cheap): 415 for what is not an image in a
    format predict reads, 413 for one over `max_pixels` (before any memory goes to decoding)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (w, h) = im.format, im.size
    except UnidentifiedImageError:
        raise RequestError(415, f"the body is not an image segcli reads ({FORMAT_NAMES}); "
                                "send the file's bytes or a multipart field 'file'", "unsupported_media") from None
    except Exception as e:
        raise RequestError(400, f"cannot read the image header ({type(e).__name__}: {e})", "bad_request") from None
    if fmt not in FORMATS:
        raise RequestError(415, f"{fmt} images are not accepted; send {FORMAT_NAMES}", "unsupported_media")
    if w * h > max_pixels:
        raise too_large(f"image of {w}x{h} = {w * h} pixels; this server accepts at most {max_pixels} (--max-pixels)")
    return w * h


def decode(data: bytes) -> np.ndarray:
    """The upload decoded exactly as `segcli predict` reads a file (400 when it is damaged)."""
    try:
        return decode_image(data, "upload")
    except DataError as e:
        raise RequestError(400, str(e), "bad_request") from None


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")  # what Image.save(path) does for a .png path: the same bytes
    return buf.getvalue()


def mask_png(labels: np.ndarray, info: DataInfo) -> bytes:
    """The mask PNG `segcli predict` writes: 0/255 for binary models, palette otherwise."""
    return png(mask_image(labels, info.binary, info.colors))


def overlay_png(image: np.ndarray, labels: np.ndarray, info: DataInfo, error: Optional[np.ndarray] = None) -> bytes:
    """The `<stem>_overlay.png` of `segcli predict --overlay` (with an error map: `--quality` too,
    the suspect regions outlined)."""
    return png(Image.fromarray(overlay(image, labels, info.binary, colors=info.colors, bands=info.bands,
                                       suspect=error)))


def data_url(png_bytes: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def describe(labels: np.ndarray, info: DataInfo, threshold: float, tta: bool,
             overlay_image: Optional[bytes] = None, quality: Optional[float] = None,
             error: Optional[np.ndarray] = None, mask: Optional[bytes] = None) -> dict[str, Any]:
    """`?format=json`: the mask's size and each class's share, name and overlay colour; with
    `?quality=true`, the label-free quality estimate and the error map under `error_map`, the name
    `segcli predict --json` gives it (`error` is every failure answer's message); with `?mask=true`,
    the mask PNG. Images are PNG data URLs. The one place the JSON answer is built."""
    k = 2 if info.binary else info.num_classes
    shares = class_fractions(labels, k)
    pal = overlay_palette(info.binary, info.colors)
    result: dict[str, Any] = {
        "width": int(labels.shape[1]), "height": int(labels.shape[0]),
        "task": "binary" if info.binary else "multiclass",
        "threshold": threshold if info.binary else None, "tta": tta,
        "fractions": shares,
        "classes": [{"index": i, "name": name, "color": "#%02x%02x%02x" % tuple(int(c) for c in pal[i]),
                     "share": shares[i]} for i, name in enumerate(info.class_names()[:k])],
    }
    if overlay_image is not None:
        result["overlay"] = data_url(overlay_image)
    if mask is not None:
        result["mask"] = data_url(mask)
    if error is not None:
        result["quality"] = quality
        result["error_map"] = data_url(png(Image.fromarray(error, "L")))
    return result
