"""Inference: numpy in, numpy out, over a torch checkpoint or an exported ONNX model.

Both backends take a normalised NCHW float32 batch whose H and W are multiples of the
model's size multiple and return probabilities as the model's OutputSpec defines them:
1 channel (foreground) for a binary model, K channels (softmax) otherwise. torch is
imported only for .pt models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from segcli.config import DataInfo
from segcli.data.io import normalize, to_channels
from segcli.errors import ModelFileError, UserError
from segcli.models.output import OutputSpec

Backend = Callable[[np.ndarray], np.ndarray]
# Allocates a float16 array of the given shape for probabilities (in memory or a .npy memmap).
ProbsAlloc = Callable[[tuple[int, ...]], np.ndarray]


class TorchBackend:
    def __init__(self, gen: Any, device: str = "auto", precision: str = "auto") -> None:
        import torch

        from segcli.device import select_device, select_precision

        self.torch = torch
        self.device = select_device(device)
        self.precision = select_precision(precision, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        # channels_last: oneDNN (CPU) and cuDNN pick faster convolution kernels for it
        self.gen = gen.to(self.device, memory_format=torch.channels_last).eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode(), self.precision.autocast():
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            probs = self.gen.output.probabilities(self.gen(x.contiguous(memory_format=torch.channels_last)).float())
        return probs.contiguous().cpu().numpy()


@dataclass
class Predictor:
    """How to turn a decoded image into probabilities and labels, whatever the backend.

    Tiling, test-time augmentation and thresholding live here, above the backend, so an
    ONNX model gets them exactly as a torch checkpoint does.
    """

    backend: Backend
    info: DataInfo
    output: OutputSpec
    meta: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.5
    tta: bool = False
    tile: Optional[int] = None  # None = automatic, 0 = never, N = N-pixel tiles
    overlap: float = 0.25
    batch_size: int = 4
    train_size: Optional[int] = None  # the training patch side, when the model says

    @property
    def size_multiple(self) -> int:
        return self.output.size_multiple

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """Decoded HxWxC image to a normalised CxHxW float32 array."""
        return normalize(to_channels(image, self.info.in_channels), self.info.mean, self.info.std)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        h, w = x.shape[-2:]
        ph, pw = self.output.padding(h, w)
        if ph or pw:  # zero after normalisation = the mean intensity, as the model pads
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)))
        out = self.backend(x)
        return out[:, :, :h, :w] if (ph or pw) else out

    def probs(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """Preprocessed same-size CxHxW arrays to probabilities at their own size.

        With `tta`, the mean over the image and its horizontal, vertical and double flips
        (nnU-Net's mirroring): 4x the compute for smoother, more reliable probabilities.
        """
        x = np.stack(batch)
        out = self._forward(x)
        if self.tta:
            out = out.astype(np.float32, copy=True)
            for axes in ((3,), (2,), (2, 3)):
                flipped = np.ascontiguousarray(np.flip(x, axes))
                out += np.flip(self._forward(flipped), axes)
            out /= 4.0
        return list(out)

    def labels(self, probs: np.ndarray) -> np.ndarray:
        """Probabilities (C'xHxW) to class labels (HxW uint8)."""
        return self.output.labels_from_probs(probs, self.threshold)

    def tile_for(self, h: int, w: int) -> int:
        """Tile side for an HxW image (0: whole image in one pass)."""
        from segcli.infer.tiling import choose_tile

        return choose_tile(h, w, self.tile, self.train_size, self.size_multiple)

    def segment(
        self, image: np.ndarray, probs_out: Optional[ProbsAlloc] = None,
    ) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """One decoded image to (labels HxW uint8, float16 C'xHxW probabilities or None).

        Probabilities are kept only when `probs_out` is given: it allocates the float16
        array (e.g. a memory-mapped .npy file) so a huge image's never sit in RAM.
        """
        h, w = image.shape[:2]
        tile = self.tile_for(h, w)
        if not tile:
            p = self.probs([self.preprocess(image)])[0]
            return self.labels(p), (_store(p, probs_out) if probs_out else None)
        from segcli.infer.tiling import sliding_window

        labels = np.empty((h, w), np.uint8)
        kept: list[Optional[np.ndarray]] = [None]

        def sink(y0: int, y1: int, rows: np.ndarray) -> None:
            labels[y0:y1] = self.labels(rows)
            if probs_out is not None:
                if kept[0] is None:
                    kept[0] = probs_out((rows.shape[0], h, w))
                kept[0][:, y0:y1] = rows

        def tiles(crops: list[np.ndarray]) -> list[np.ndarray]:
            return self.probs([self.preprocess(c) for c in crops])

        sliding_window(image, tiles, tile, sink, self.overlap, self.batch_size)
        return labels, kept[0]

    def segment_batch(self, images: list[np.ndarray], keep_probs: bool = False) -> list[tuple[np.ndarray, Optional[np.ndarray]]]:
        """Same-size images that need no tiling, in one forward pass."""
        out = self.probs([self.preprocess(im) for im in images])
        return [(self.labels(p), p.astype(np.float16) if keep_probs else None) for p in out]

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One decoded image to (labels HxW, float16 probabilities C'xHxW)."""
        labels, p = self.segment(image, _in_memory)
        assert p is not None
        return labels, p


def _in_memory(shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape, np.float16)


def _store(p: np.ndarray, alloc: ProbsAlloc) -> np.ndarray:
    out = alloc(p.shape)
    out[...] = p
    return out


def load_predictor(path: str | Path, device: str = "auto", precision: str = "auto") -> Predictor:
    """A Predictor for a segcli checkpoint (.pt) or an exported ONNX model (.onnx)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        pred = onnx_predictor(path)
    else:
        from segcli.checkpoint import Checkpoint
        from segcli.config import to_dict

        ckpt = Checkpoint.load(path)
        meta = {"model": ckpt.model, "train": to_dict(ckpt.train), "metrics": ckpt.metrics}
        pred = Predictor(TorchBackend(ckpt.build_generator(), device, precision), ckpt.data, ckpt.output, meta)
    pred.train_size = _train_size(pred.meta)
    return pred


def onnx_predictor(path: Path) -> Predictor:
    """A Predictor running an exported model in ONNX Runtime (no torch import)."""
    from segcli.config import from_dict
    from segcli.infer.onnxrt import OnnxBackend, session, session_metadata

    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    sess = session(path)
    meta = session_metadata(sess, path)
    try:
        info = from_dict(DataInfo, meta["data_info"])
        output = OutputSpec(bool(meta["binary"]), int(meta["num_classes"]), int(meta["size_multiple"]))
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(f"{path}: segcli metadata lacks data_info/size_multiple; re-export it") from None
    return Predictor(OnnxBackend(sess), info, output, meta)


def _train_size(meta: dict[str, Any]) -> Optional[int]:
    """The training patch side from a checkpoint's train config or an export's metadata."""
    train = meta.get("train") if isinstance(meta.get("train"), dict) else {}
    size = meta.get("img_size") or train.get("img_size")
    try:
        return int(size) if size and int(size) > 0 else None
    except (TypeError, ValueError):
        return None


def resolve_model(model: Optional[str]) -> Path:
    """--model: a file, a run folder (its best.pt), or None for the newest run's best weights."""
    from segcli.runs import default_model

    if model is None:
        return default_model()
    p = Path(model)
    if p.is_dir() and (p / "weights").is_dir():
        p = p / "weights" / "best.pt"
    if not p.is_file():
        raise ModelFileError(f"{p}: model file not found")
    return p


def check_options(tile: Optional[int] = None, no_tile: bool = False, overlap: float = 0.25,
                  threshold: float = 0.5, batch_size: int = 4) -> None:
    """The inference options' values, checked before any work (predict and evaluate share them)."""
    if tile is not None and no_tile:
        raise UserError("--tile and --no-tile contradict each other; pass one")
    if not 0.0 <= overlap <= 0.9:
        raise UserError(f"--overlap {overlap}: must be between 0 and 0.9 (fraction of a tile)")
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--threshold {threshold}: a foreground probability, from 0 to 1")
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")


def configure(
    predictor: Predictor, tile: Optional[int] = None, no_tile: bool = False, overlap: float = 0.25,
    tta: bool = False, threshold: float = 0.5, batch_size: int = 4,
) -> Predictor:
    """Apply the inference options predict and evaluate share, checking their values."""
    check_options(tile, no_tile, overlap, threshold, batch_size)
    if tile is not None and tile < 2 * predictor.size_multiple:
        raise UserError(f"--tile {tile}: must be at least {2 * predictor.size_multiple} pixels for this model")
    predictor.tile = 0 if no_tile else tile
    predictor.overlap, predictor.tta = overlap, tta
    predictor.threshold, predictor.batch_size = threshold, batch_size
    return predictor
