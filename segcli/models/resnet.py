"""torchvision ResNet encoders for the U-Net generator (as segmentation_models_pytorch offers).

Features at strides 2, 4, 8, 16, 32; the decoder adds a last block without a skip to get
back to full resolution. ImageNet weights are optional and never fetched at predict time:
a checkpoint already holds every weight.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn

from segcli.errors import UserError

_WIDTHS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}


class ResNetEncoder(nn.Module):
    def __init__(self, name: str, in_channels: int) -> None:
        super().__init__()
        import torchvision

        net = getattr(torchvision.models, name)(weights=None)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)
        self.pool = net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        top = _WIDTHS[name]
        self.out_channels: list[int] = [64, top // 8, top // 4, top // 2, top]
        self.strides: list[int] = [2, 4, 8, 16, 32]
        self.decoder_channels: list[int] = [256, 128, 64, 32, 16]
        self.name, self.in_channels = name, in_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.stem(x)
        f2 = self.layer1(self.pool(f1))
        f3 = self.layer2(f2)
        f4 = self.layer3(f3)
        return [f1, f2, f3, f4, self.layer4(f4)]

    def load_imagenet(self, path: Optional[str] = None) -> None:
        """ImageNet weights from torchvision's cache/download, or from a local state-dict file."""
        if path:
            p = Path(path)
            if not p.is_file():
                raise UserError(f"{p}: --weights file not found")
            try:
                state = torch.load(p, map_location="cpu", weights_only=True)
            except Exception as e:
                raise UserError(f"{p}: not a state-dict file ({type(e).__name__}); save one with torch.save(model.state_dict())") from None
        else:
            import torchvision

            weights = torchvision.models.get_model_weights(self.name).IMAGENET1K_V1
            try:
                state = weights.get_state_dict(progress=False)
            except Exception as e:
                raise UserError(
                    f"cannot fetch ImageNet weights for {self.name} ({type(e).__name__}); "
                    "offline? download them elsewhere and pass --weights PATH"
                ) from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        conv1 = state.get("conv1.weight")
        if conv1 is not None and conv1.shape[1] != self.in_channels:
            # gray (or other) inputs: average the RGB filters (and repeat), as smp does
            mean = conv1.mean(1, keepdim=True)
            state["conv1.weight"] = mean.repeat(1, self.in_channels, 1, 1) * (3 / self.in_channels)
        mapping = {"conv1.": "stem.0.", "bn1.": "stem.1."}
        mine = {}
        for k, v in state.items():
            if k.startswith("fc."):
                continue
            for old, new in mapping.items():
                if k.startswith(old):
                    k = new + k[len(old):]
            mine[k] = v
        missing, unexpected = self.load_state_dict(mine, strict=False)
        if unexpected or [m for m in missing if "num_batches_tracked" not in m]:
            raise UserError(f"{path or self.name}: weights do not fit a {self.name} encoder "
                            f"({len(missing)} missing, {len(unexpected)} unexpected keys)")
