"""Inference: numpy in, numpy out, over a torch checkpoint or an exported ONNX model.

Both backends take a normalised NCHW float32 batch whose H and W are multiples of the
model's size multiple and return per-class probabilities: 1 channel (foreground) for a
binary model, K channels (softmax) otherwise. torch is imported only for .pt models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from segcli.config import DataInfo
from segcli.data.io import to_channels, to_float
from segcli.errors import ModelFileError

Backend = Callable[[np.ndarray], np.ndarray]


class TorchBackend:
    def __init__(self, gen: Any, device: str = "auto", precision: str = "auto") -> None:
        import torch

        from segcli.device import select_device, select_precision

        self.torch = torch
        self.device = select_device(device)
        self.precision = select_precision(precision, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.gen = gen.to(self.device).eval()
        self.binary = gen.head.out_channels == 1

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode(), self.precision.autocast():
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            logits = self.gen(x).float()
            probs = torch.sigmoid(logits) if self.binary else logits.softmax(1)
        return probs.cpu().numpy()


@dataclass
class Predictor:
    backend: Backend
    info: DataInfo
    size_multiple: int = 16
    meta: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.5

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """Decoded HxWxC image to a normalised CxHxW float32 array."""
        x = to_float(to_channels(image, self.info.in_channels))
        x = (x - np.asarray(self.info.mean, np.float32)) / np.asarray(self.info.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def probs(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """Preprocessed same-size CxHxW arrays to probabilities at their own size."""
        h, w = batch[0].shape[-2:]
        m = self.size_multiple
        ph, pw = (-h) % m, (-w) % m
        x = np.stack(batch)
        if ph or pw:  # zero after normalisation = the mean intensity, as the model pads
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)))
        out = self.backend(x)
        return [p[:, :h, :w] for p in out]

    def labels(self, probs: np.ndarray) -> np.ndarray:
        """Probabilities (C'xHxW) to class labels (HxW uint8)."""
        if self.info.binary:
            return (probs[0] > self.threshold).astype(np.uint8)
        return probs.argmax(0).astype(np.uint8)

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One decoded image to (labels HxW, probabilities C'xHxW)."""
        p = self.probs([self.preprocess(image)])[0]
        return self.labels(p), p


def load_predictor(path: str | Path, device: str = "auto", precision: str = "auto") -> Predictor:
    """A Predictor for a segcli checkpoint (.pt) or an exported ONNX model (.onnx)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        from segcli.export import onnx_predictor

        return onnx_predictor(path)
    from segcli import checkpoint

    ckpt = checkpoint.load(path)
    gen, mcfg, info = checkpoint.model_from_checkpoint(ckpt)
    meta = {"model": mcfg, "train": ckpt.get("train", {}), "metrics": ckpt.get("metrics", {})}
    return Predictor(TorchBackend(gen, device, precision), info, gen.size_multiple, meta)


def resolve_model(model: Optional[str]) -> Path:
    from segcli.runs import default_model

    if model is None:
        return default_model()
    p = Path(model)
    if p.is_dir() and (p / "weights").is_dir():
        p = p / "weights" / "best.pt"
    if not p.is_file():
        raise ModelFileError(f"{p}: model file not found")
    return p
