"""The PyTorch backends of a Predictor: a checkpoint's generator and its quality estimator on one
device and precision, numpy in and out. Imported only for .pt models (the ONNX path stays torch-free)."""

from __future__ import annotations

from typing import Any

import numpy as np


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


class TorchEstimator:
    """The quality estimator beside a TorchBackend (same device and precision): (normalised images,
    probabilities) to (N, 1, H, W) probabilities that each pixel's label is wrong."""

    def __init__(self, net: Any, backend: TorchBackend) -> None:
        self.torch, self.device, self.precision = backend.torch, backend.device, backend.precision
        self.net = net.to(self.device, memory_format=self.torch.channels_last).eval()

    def __call__(self, batch: np.ndarray, probs: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode(), self.precision.autocast():
            x = torch.from_numpy(batch).to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            p = torch.from_numpy(probs).to(self.device, non_blocking=True)
            err = torch.sigmoid(self.net(x, p).float())
        return err.contiguous().cpu().numpy()
