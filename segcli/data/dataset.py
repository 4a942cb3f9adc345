"""The torch Dataset over (image, mask) samples, with an in-memory cache of decoded arrays."""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from torchvision import tv_tensors

from segcli.config import DataInfo
from segcli.data.discovery import Sample
from segcli.data.io import check_channels, encode_mask, normalize, read_image, read_mask, to_channels, to_float

CACHE_BYTES = 4 * 1024**3


class SegDataset(Dataset):
    """Yields (image float CxHxW, labels int64 HxW): after the joint (training) transform, or
    whole and normalised when `transform` is None (validation).

    Samples without a mask (unlabeled images) yield an all-ignore label map, or their
    pseudo-labels once semi-supervised training has set them in `pseudo`.
    """

    def __init__(
        self, samples: list[Sample], info: DataInfo, transform: Optional[Callable], cache: bool = True
    ) -> None:
        self.samples, self.info, self.transform = samples, info, transform
        self._cache: Optional[dict[int, tuple[np.ndarray, np.ndarray]]] = {} if cache else None
        self.pseudo: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoded image (HxWxC, model channels, uint8/16) and labels (HxW uint8)."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        s = self.samples[i]
        image = to_channels(check_channels(read_image(s.image), self.info.in_channels, s.image), self.info.in_channels)
        if s.mask is not None:
            labels = encode_mask(read_mask(s.mask), self.info.binary, self.info.ignore_index)
        else:
            labels = np.full(image.shape[:2], 255, np.uint8)
        if self._cache is not None:
            self._cache[i] = (image, labels)
        return image, labels

    def preload(self, budget: int = CACHE_BYTES) -> bool:
        """Decode everything now when it fits the budget, so forked workers share it."""
        if self._cache is None:
            return False
        used = 0
        for i in range(len(self)):
            image, labels = self.load(i)
            used += image.nbytes + labels.nbytes
            if used > budget:
                self._cache = None  # doesn't fit: decode on the fly instead
                return False
        return True

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        # (index, seed) from distributed.SeededSampler: the augmentation then depends on the seed
        # alone, not on which process or loader worker draws the sample
        i, seed = key if isinstance(key, tuple) else (key, None)
        image, labels = self.load(i)
        labels = self.pseudo.get(i, labels)
        if self.transform is None:
            return torch.from_numpy(normalize(image, self.info.mean, self.info.std)), torch.from_numpy(labels).long()
        img = tv_tensors.Image(torch.from_numpy(to_float(image)).permute(2, 0, 1))
        mask = tv_tensors.Mask(torch.from_numpy(labels))
        if seed is None:
            img, mask = self.transform(img, mask)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                img, mask = self.transform(img, mask)
        return img.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long()


def channel_stats(ds: SegDataset, max_images: int = 64) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the images on the [0, 1] scale."""
    idx = np.linspace(0, len(ds) - 1, min(len(ds), max_images)).round().astype(int)
    total = np.zeros(ds.info.in_channels)
    sq = np.zeros(ds.info.in_channels)
    n = 0
    for i in sorted(set(idx.tolist())):
        x = to_float(ds.load(i)[0]).reshape(-1, ds.info.in_channels).astype(np.float64)
        total += x.sum(0)
        sq += (x * x).sum(0)
        n += x.shape[0]
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean**2, 1e-8))
    return [round(float(m), 6) for m in mean], [round(float(max(s, 1e-3)), 6) for s in std]


class SizeGroupedBatches(Sampler[list[int]]):
    """Batches of same-size images in a fixed order: full-resolution validation without resizing."""

    def __init__(self, sizes: list[tuple[int, int]], batch_size: int) -> None:
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, s in enumerate(sizes):
            groups[s].append(i)
        self.batches = [g[k : k + batch_size] for g in groups.values() for k in range(0, len(g), batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
