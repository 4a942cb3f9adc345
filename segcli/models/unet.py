"""The generator: a U-Net built as encoder + decoder + head, with real skip connections."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from segcli.models.output import OutputSpec


class ConvBlock(nn.Sequential):
    """Two 3x3 conv + BatchNorm + ReLU: the U-Net's unit of work."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class UNetEncoder(nn.Module):
    """Plain U-Net encoder. Returns features at strides 1, 2, 4, ... 2**depth."""

    def __init__(self, in_channels: int, base_channels: int = 32, depth: int = 4) -> None:
        super().__init__()
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.stem = ConvBlock(in_channels, widths[0])
        self.stages = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), ConvBlock(widths[i], widths[i + 1])) for i in range(depth)
        )
        self.out_channels: list[int] = widths
        self.strides: list[int] = [2**i for i in range(depth + 1)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        return feats


class DecoderBlock(nn.Module):
    """Upsample x2 (nearest), concatenate the skip feature (when there is one), then a ConvBlock.

    Nearest upsampling with the conv over [upsampled, skip] (as smp's Unet) trains to a clearly
    better model than a 2x2 transposed conv in front of the concatenation: on CamVid at 1000
    equal steps 0.41 vs 0.31-0.36 test mIoU (benchmarks/recipe_bisect.py).
    """

    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvBlock(cin + skip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


class UNetDecoder(nn.Module):
    """Walks back up the encoder's features to stride 1.

    Works for any encoder whose strides double from level to level; encoders without a
    stride-1 feature (ResNets start at stride 2) get extra blocks with no skip.
    """

    def __init__(self, enc_channels: list[int], enc_strides: list[int], widths: list[int] | None = None) -> None:
        super().__init__()
        skips = dict(zip(enc_strides, enc_channels))
        stride, cin = enc_strides[-1], enc_channels[-1]
        blocks = []
        while stride > 1:
            stride //= 2
            skip = skips.get(stride, 0)
            if widths:  # the encoder's own schedule (wide ResNets would make huge decoders)
                cout = widths[len(blocks)]
            else:
                cout = max(skip, cin // 2) if skip else max(16, cin // 2)
            blocks.append(DecoderBlock(cin, skip, cout))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.enc_strides = enc_strides
        self.out_channels = cin

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        by_stride = dict(zip(self.enc_strides, feats))
        x = feats[-1]
        stride = self.enc_strides[-1]
        for block in self.blocks:
            stride //= 2
            x = block(x, by_stride.get(stride))
        return x


def _init_decoder(decoder: nn.Module, head: nn.Conv2d) -> None:
    """He init for the decoder's ReLU convs, Xavier for the linear head (PyTorch's default conv
    init is scaled for a=sqrt(5) and starts the decoder with weak activations)."""
    for m in decoder.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
    nn.init.xavier_uniform_(head.weight)
    nn.init.zeros_(head.bias)


class Generator(nn.Module):
    """encoder -> decoder -> 1x1 head. Logits out: 1 channel for binary, K for K classes.

    `output` (an OutputSpec) says what the logits mean: activation, labels, size multiple.
    Any input size works: the input is padded up to the size multiple and the logits are
    cropped back. `pad_inside=False` leaves that to the caller (exported graphs avoid the
    shape arithmetic).
    """

    def __init__(self, encoder: nn.Module, out_channels: int, decoder_channels: Optional[list[int]] = None) -> None:
        super().__init__()
        self.encoder = encoder
        widths = list(decoder_channels or []) or getattr(encoder, "decoder_channels", None)
        self.decoder = UNetDecoder(encoder.out_channels, encoder.strides, widths)
        self.head = nn.Conv2d(self.decoder.out_channels, out_channels, 1)
        self.output = OutputSpec(binary=out_channels == 1, num_classes=max(2, out_channels),
                                 size_multiple=encoder.strides[-1])
        self.pad_inside = True
        _init_decoder(self.decoder, self.head)

    @property
    def size_multiple(self) -> int:
        return self.output.size_multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = self.output.padding(h, w) if self.pad_inside else (0, 0)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        logits = self.head(self.decoder(self.encoder(x)))
        return logits[..., :h, :w] if (ph or pw) else logits
