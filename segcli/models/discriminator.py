"""Conditional discriminators: they judge an (image, mask) pair.

The mask arrives as per-class probabilities (K channels, 2 for binary): the truth as a
(scaled) one-hot map, the generator's output as its softmax. Spectral norm keeps D
Lipschitz, which stabilises all three GAN losses without BatchNorm's real/fake batch
statistics problem.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _sn_conv(cin: int, cout: int, k: int, stride: int, padding: int) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, k, stride=stride, padding=padding))


def _downsampling(in_channels: int, width: int, layers: int, kernel: int) -> tuple[nn.Sequential, int]:
    """Stride-2 SN convs doubling the width (capped at 8x): the trunk of the global and pixel Ds."""
    mods: list[nn.Module] = []
    c = in_channels
    for i in range(layers):
        cout = width * min(2**i, 8)
        mods += [_sn_conv(c, cout, kernel, 2, (kernel - 1) // 2 if kernel % 2 else 1), nn.LeakyReLU(0.2, True)]
        c = cout
    return nn.Sequential(*mods), c


class PatchDiscriminator(nn.Module):
    """pix2pix-style PatchGAN: one real/fake score per overlapping patch (70x70 at 3 layers)."""

    def __init__(self, in_channels: int, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = [_sn_conv(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        c = width
        for i in range(1, layers + 1):
            cout = width * min(2**i, 8)
            stride = 2 if i < layers else 1
            mods += [_sn_conv(c, cout, 4, stride, 1), nn.LeakyReLU(0.2, True)]
            c = cout
        mods.append(_sn_conv(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GlobalDiscriminator(nn.Module):
    """The original design's global CNN: strided convs, global pooling, one score per image."""

    def __init__(self, in_channels: int, width: int = 64, layers: int = 4) -> None:
        super().__init__()
        self.features, c = _downsampling(in_channels, width, layers, 3)
        self.fc = spectral_norm(nn.Linear(c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x).mean(dim=(2, 3))
        return self.fc(f)


class PixelDiscriminator(nn.Module):
    """Fully convolutional D with a confidence map at input resolution (Hung et al. 2018)."""

    def __init__(self, in_channels: int, width: int = 64, layers: int = 4) -> None:
        super().__init__()
        trunk, c = _downsampling(in_channels, width, layers, 4)
        self.net = nn.Sequential(trunk, _sn_conv(c, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
