"""The Python API for notebooks and scripts.

    import segcli
    model = segcli.load("runs/train/exp")          # checkpoint, run folder or .onnx; None = newest run
    mask = model.predict("photo.jpg")              # HxW uint8 class indices (binary: 0/1)
    mask, probs = model.predict(array, probs=True) # probs: K x H x W float32, K = number of classes
    mask, q, err = model.predict(img, quality=True)  # estimated mIoU (binary: Dice), HxW error map in [0, 1]
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from segcli.errors import UserError

ImageLike = Union[str, Path, np.ndarray, Any]  # Any: a PIL image


def _from_pil(im: Any) -> np.ndarray:
    """A PIL image as segcli decodes files: 16-bit kept, gray stays gray, alpha and palette dropped."""
    from PIL import ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)
    if im.mode in ("1", "L", "LA"):
        return np.asarray(im.convert("L"))
    if im.mode in ("I", "F"):
        return _from_array(np.asarray(im, dtype=np.float64) / max(float(np.asarray(im).max()), 1.0))
    return np.asarray(im.convert("RGB"))


def _from_array(a: np.ndarray, channels: Optional[int] = None) -> np.ndarray:
    """HxW or HxWxC as segcli decodes files. Gray / RGB (/ RGBA, alpha dropped unless the model takes
    4 bands): uint8/uint16, floats taken as 0..1 and kept at 16 bits. Other band counts are taken as a
    TIFF stack is: uint8/uint16 as they are, anything else float32 as stored."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 4 and channels != 4:
        a = a[:, :, :3]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] < 1):
        raise UserError(f"image array of shape {a.shape}: expected HxW or HxWxC")
    if a.ndim == 3 and a.shape[2] not in (1, 3):
        out = a if a.dtype in (np.uint8, np.uint16) else a.astype(np.float32)
        if out.dtype == np.float32 and not np.isfinite(out).all():
            raise UserError("image array holds NaN or infinite values")
        return np.ascontiguousarray(out)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        a = (np.clip(a, 0.0, 1.0) * 65535).round().astype(np.uint16)
    elif a.dtype not in (np.uint8, np.uint16):
        if a.min() < 0 or a.max() > 65535:
            raise UserError(f"image array of dtype {a.dtype} with values outside 0..65535; pass uint8, uint16 or floats in 0..1")
        a = a.astype(np.uint16 if a.max() > 255 else np.uint8)
    return np.ascontiguousarray(a[:, :, None] if a.ndim == 2 else a)


def to_image_array(image: ImageLike, channels: Optional[int] = None) -> np.ndarray:
    """A path, PIL image or ndarray as the HxWxC array segcli's predictor takes (`channels`: the
    model's input bands, when known)."""
    if isinstance(image, (str, Path)):
        from segcli.data.io import read_image

        return read_image(Path(image))
    if isinstance(image, np.ndarray):
        return _from_array(image, channels)
    if hasattr(image, "mode") and hasattr(image, "convert"):
        return _from_array(_from_pil(image))
    raise UserError(f"cannot read an image from {type(image).__name__}; pass a path, a PIL image or a numpy array")


class Model:
    """A loaded segcli model. `predict` takes one image, or a list of them."""

    def __init__(self, predictor: Any, path: Path) -> None:
        self._predictor = predictor
        self.path = path
        self.info = predictor.info

    @property
    def classes(self) -> list[str]:
        return self.info.class_names()

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def binary(self) -> bool:
        return self.info.binary

    @property
    def threshold(self) -> float:
        return self._predictor.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        from segcli.infer.options import InferenceOptions

        InferenceOptions(threshold=float(value)).check()
        self._predictor = replace(self._predictor, threshold=float(value))

    @property
    def has_estimator(self) -> bool:
        """Whether the model holds a quality estimator (`predict(..., quality=True)`)."""
        return self._predictor.estimator is not None

    def predict(self, image: ImageLike | list, probs: bool = False, quality: bool = False) -> Any:
        """Mask (HxW uint8 class indices, at the image's own size); with probs=True, (mask, KxHxW probabilities);
        with quality=True, also the estimated quality (mIoU; binary: foreground Dice) and the HxW float32 error
        map (the probability that each pixel's label is wrong, in steps of 1/255): (mask, [probs,] quality, error)."""
        if isinstance(image, list):
            return [self.predict(im, probs, quality) for im in image]
        from segcli.data.io import check_channels

        array = to_image_array(image, self.info.in_channels)
        where = image if isinstance(image, (str, Path)) else f"image of shape {array.shape}"
        predictor = self._predictor
        if quality:
            predictor.require_quality()
            predictor = replace(predictor, quality=True)
        seg = predictor.predict(check_channels(array, self.info.in_channels, where))
        out: list[Any] = [seg.labels]
        if probs:
            p = seg.probs
            assert p is not None
            if self.binary:  # one foreground channel -> (background, foreground), like the multi-class case
                p = np.concatenate([1.0 - p, p], axis=0)
            out.append(p.astype(np.float32))
        if quality:
            assert seg.error is not None
            out += [seg.quality, seg.error.astype(np.float32) / 255.0]
        return out[0] if len(out) == 1 else tuple(out)

    __call__ = predict

    def __repr__(self) -> str:
        kind = "binary" if self.binary else f"{self.num_classes} classes"
        return f"segcli.Model({str(self.path)!r}, {kind}, {self.info.in_channels} channel(s))"


def load(path: Optional[str | Path] = None, device: str = "auto", precision: str = "auto", *,
         tile: Optional[int] = None, tta: bool = False, threshold: Optional[float] = None) -> Model:
    """A segcli checkpoint (.pt), run folder or exported .onnx (an `export --int8` one too); None: the
    newest run's best.pt. `tile` (None: automatic, 0: never), `tta` and `threshold` as predict's options."""
    from segcli.infer.options import InferenceOptions
    from segcli.infer.predictor import load_predictor, resolve_model

    resolved = resolve_model(None if path is None else str(path))
    options = InferenceOptions(device=device, precision=precision, tile=tile, tta=tta, threshold=threshold)
    return Model(load_predictor(resolved, options), resolved)
