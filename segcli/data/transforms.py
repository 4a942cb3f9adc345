"""Joint (image, mask) transforms on tensors.

Built on torchvision.transforms.v2 with tv_tensors: v2 resizes and rotates a `Mask` with
NEAREST, and the fill dicts pad masks with the ignore label, so masks are never
interpolated and padding never counts as a class.
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from segcli.data.io import IGNORE

Pair = tuple[torch.Tensor, torch.Tensor]
_FILL = {tv_tensors.Image: 0.0, tv_tensors.Mask: IGNORE}


class RandomScaleCrop:
    """Random rescale (image bilinear, mask nearest), pad to `size` with the ignore label, random crop."""

    def __init__(self, size: int, scale: tuple[float, float] = (0.75, 1.25)) -> None:
        self.size, self.scale = size, scale

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask) -> Pair:
        h, w = image.shape[-2:]
        s = float(torch.empty(1).uniform_(*self.scale))
        if abs(s - 1.0) > 1e-3:
            nh, nw = max(1, round(h * s)), max(1, round(w * s))
            image = v2.functional.resize(image, [nh, nw], antialias=True)
            mask = v2.functional.resize(mask, [nh, nw])
        h, w = image.shape[-2:]
        ph, pw = max(0, self.size - h), max(0, self.size - w)
        if ph or pw:
            image = v2.functional.pad(image, [0, 0, pw, ph], fill=0.0)
            mask = v2.functional.pad(mask, [0, 0, pw, ph], fill=IGNORE)
        h, w = image.shape[-2:]
        top = int(torch.randint(0, h - self.size + 1, ()))
        left = int(torch.randint(0, w - self.size + 1, ()))
        image = v2.functional.crop(image, top, left, self.size, self.size)
        mask = v2.functional.crop(mask, top, left, self.size, self.size)
        return image, mask


class RandomRot90:
    """Rotations by multiples of 90 degrees: free for data with no 'up' (microscopy, aerial)."""

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        k = int(torch.randint(0, 4, ()))
        if k:
            image = tv_tensors.wrap(torch.rot90(image, k, dims=(-2, -1)), like=image)
            mask = tv_tensors.wrap(torch.rot90(mask, k, dims=(-2, -1)), like=mask)
        return image, mask


class Compose:
    def __init__(self, transforms: list) -> None:
        self.transforms = transforms

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        for t in self.transforms:
            image, mask = t(image, mask)
        return image, mask


def train_transforms(
    size: int, mean: list[float], std: list[float], channels: int, orientation_free: bool, augment: bool = True,
    zoom: float = 1.0,
) -> Compose:
    """Training augmentation: scale + crop, flips, small rotations, colour jitter, normalise.

    `augment=False`: random crops and flips only (what a plain training loop does).
    `zoom`: every image rescaled by this factor first (0.5: half resolution), around which the
    augmentation's random scale varies.
    """
    scale = (0.75 * zoom, 1.25 * zoom) if augment else (zoom, zoom)
    ts: list = [RandomScaleCrop(size, scale), v2.RandomHorizontalFlip()]
    if orientation_free:
        ts += [v2.RandomVerticalFlip(), RandomRot90()]
    if not augment:
        return Compose([*ts, v2.Normalize(mean, std)])
    ts.append(v2.RandomApply([v2.RandomRotation(10, fill=_FILL)], p=0.3))
    if channels not in (1, 3):  # torchvision's colour jitter knows gray and RGB only: bands are left as measured
        return Compose([*ts, v2.Normalize(mean, std)])
    jitter = dict(brightness=0.2, contrast=0.2)
    if channels == 3:
        jitter.update(saturation=0.2)  # no hue: its RGB->HSV round trip costs ~10 ms a crop, more than the rest
    ts += [v2.ColorJitter(**jitter), v2.Normalize(mean, std)]
    return Compose(ts)
