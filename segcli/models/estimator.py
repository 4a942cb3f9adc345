"""The quality estimator: a small net that predicts, per pixel, whether the generator's label is wrong.

A flaw detector (Ke et al. 2020) beside the discriminator: it sees what D sees, the image and the
generator's probabilities, and learns during training from the generator's own mistakes on the
training crops (the true error map is known for every labelled crop). Everything learned runs at
1/2 to 1/8 resolution, so it costs a fraction of a generator pass; the half-resolution logit is
upsampled and added to a learned linear term of three per-pixel uncertainty statistics of the
probabilities (normalised entropy, the log-odds of 1 - max probability, 1 - margin), so boundaries
stay sharp without convolutions at full resolution. It starts as the max-softmax baseline (error
probability = 1 - max probability: the linear term reads the log-odds with weight 1 and the learned
part starts at zero) and learns corrections from there, so even a short run's estimator is no worse
than the baseline. Any input size: no padding, no fixed shapes (it exports to ONNX with dynamic N, H, W).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

WIDTH = 16  # ~58k parameters for RGB and 11 classes; about a quarter of a default generator pass
STATS = 3


def pixel_stats(p: torch.Tensor, k: int) -> torch.Tensor:
    """(N, K, H, W) class probabilities to (N, 3, H, W): normalised entropy, log((1 - max) / max)
    (the log-odds that the label is wrong if the probabilities are calibrated), 1 - margin."""
    ent = -(p * p.clamp_min(1e-7).log()).sum(1, keepdim=True) / math.log(k)
    top = torch.topk(p, 2, dim=1).values
    top1 = top[:, :1]
    odds = (1 - top1).clamp_min(1e-6).log() - top1.clamp_min(1e-6).log()
    return torch.cat([ent, odds, 1 - (top1 - top[:, 1:2])], 1)


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class ErrorEstimator(nn.Module):
    """(image (N, C, H, W) normalised, probabilities (N, C', H, W) as the generator's OutputSpec gives
    them) -> error logit (N, 1, H, W): how likely the generator's label of each pixel is wrong."""

    def __init__(self, in_channels: int, num_classes: int, binary: bool, width: int = WIDTH) -> None:
        super().__init__()
        self.binary = binary
        self.k = k = 2 if binary else num_classes
        w = width
        cin = in_channels + k + STATS
        self.d1 = nn.Sequential(_conv(cin, w, 2), _conv(w, w))  # 1/2
        self.d2 = nn.Sequential(_conv(w, 2 * w, 2), _conv(2 * w, 2 * w, dilation=2))  # 1/4
        self.d3 = nn.Sequential(_conv(2 * w, 2 * w, 2), _conv(2 * w, 2 * w, dilation=2), _conv(2 * w, 2 * w, dilation=4))
        self.u2 = _conv(4 * w, w)
        self.u1 = _conv(2 * w, w // 2)
        self.head = nn.Sequential(nn.Conv2d(w // 2 + STATS, 16, 1), nn.ReLU(inplace=True), nn.Conv2d(16, 1, 1))
        self.skip = nn.Conv2d(STATS, 1, 1, bias=False)  # the full-resolution linear term
        with torch.no_grad():  # start as max-softmax: logit = log-odds of 1 - max; the rest starts at zero
            self.skip.weight.zero_()
            self.skip.weight[0, 1] = 1.0
            last = self.head[-1]
            last.weight.zero_()
            last.bias.zero_()

    def class_probs(self, probs: torch.Tensor) -> torch.Tensor:
        return torch.cat([1 - probs, probs], 1) if self.binary else probs

    def inputs(self, image: torch.Tensor, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the layers read: (image, class probabilities, their statistics) stacked; the statistics."""
        p = self.class_probs(probs.float())
        st = pixel_stats(p, self.k)
        return torch.cat([image.to(p.dtype), p, st], 1), st

    def forward(self, image: torch.Tensor, probs: Optional[torch.Tensor],
                inputs: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """`inputs`: `self.inputs(image, probs)` computed already (then `probs` is not read): training
        computes them once on a D step for D's update and G's term."""
        z, st = self.inputs(image, probs) if inputs is None else inputs
        a = self.d1(z)
        b = self.d2(a)
        c = self.d3(b)
        u = self.u2(torch.cat([_up(c, b), b], 1))
        u = self.u1(torch.cat([_up(u, a), a], 1))
        half = self.head(torch.cat([u, st[:, :, ::2, ::2]], 1))
        return _up(half, st).float() + self.skip(st)


def build_estimator(in_channels: int, num_classes: int, binary: bool, width: int = WIDTH) -> Any:
    return ErrorEstimator(in_channels, num_classes, binary, width)
