"""Training data: the datasets (decoded into memory when they fit), their transforms and loaders.

Under torchrun each process loads its part of every global batch and of the validation set.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch.utils.data import DataLoader

from segcli.config import DataInfo, TrainConfig
from segcli.data import Prepared
from segcli.data.dataset import SegDataset, SizeGroupedBatches
from segcli.data.scan import verify_decodable
from segcli.data.transforms import train_transforms
from segcli.train import distributed


@dataclass
class Datasets:
    train: SegDataset
    val: SegDataset


def load_datasets(cfg: TrainConfig, info: DataInfo, prep: Prepared) -> Datasets:
    """Both splits, decoded into memory when they fit; without the cache every image is decoded
    once now, so a truncated file fails before epoch 1 rather than in it."""
    train_ds = SegDataset(prep.splits.train, info, transform=None, cache=cfg.cache)
    val_ds = SegDataset(prep.splits.val, info, transform=None, cache=cfg.cache)
    cached = cfg.cache and train_ds.preload() and val_ds.preload()
    if not cached:
        verify_decodable(prep.splits.train + prep.splits.val)
    return Datasets(train_ds, val_ds)


def train_transform(cfg: TrainConfig, info: DataInfo, zoom: float = 1.0, multiple: int = 32) -> Any:
    """The training augmentation for this run's (resolved) options and data; `zoom` 0.5: crops of
    half the patch size (a multiple of the model's `multiple`) from the images at half resolution."""
    size = cfg.img_size if zoom == 1.0 else max(multiple, int(cfg.img_size * zoom) // multiple * multiple)
    return train_transforms(size, info.mean, info.std, info.in_channels, bool(cfg.orientation_free), cfg.augment, zoom)


def train_loader(ds: SegDataset, cfg: TrainConfig, ctx: distributed.Context, seed: int,
                 batch_size: Optional[int] = None) -> DataLoader:
    """Shuffled crops of `ds` in this process's share of each global batch (`batch_size`, default the
    run's); set_epoch() reshuffles."""
    sampler = distributed.train_sampler(ds, seed, ctx)
    batch = ctx.local_batch(batch_size or cfg.batch_size)
    return DataLoader(
        ds, batch_size=batch, sampler=sampler, drop_last=len(sampler) >= batch,
        num_workers=cfg.workers, persistent_workers=cfg.workers > 0, pin_memory=torch.cuda.is_available(),
    )


def low_res_loader(train: SegDataset, cfg: TrainConfig, info: DataInfo, ctx: distributed.Context,
                   multiple: int) -> DataLoader:
    """--progressive's loader: the training images at half resolution, crops of half the patch size,
    four times the batch (the pixels of a full-resolution step)."""
    ds = copy.copy(train)  # shares the decoded images; its own transform (loader workers copy the dataset)
    ds.transform = train_transform(cfg, info, zoom=0.5, multiple=multiple)
    return train_loader(ds, cfg, ctx, cfg.seed, batch_size=4 * cfg.batch_size)


def build_loaders(cfg: TrainConfig, info: DataInfo, ds: Datasets, prep: Prepared,
                  ctx: distributed.Context) -> tuple[DataLoader, DataLoader]:
    """The training loader (augmented crops) and the validation loader (whole images, same-size batches)."""
    ds.train.info = ds.val.info = info  # the resolved info: normalisation statistics fitted on these images
    ds.train.transform = train_transform(cfg, info)
    ds.val.transform = None  # whole images, normalised (segcli.data.io.normalize)
    batch = ctx.local_batch(cfg.batch_size)
    val_batches = distributed.shard_batches(SizeGroupedBatches(prep.val_sizes, batch), ctx)
    val_dl = DataLoader(ds.val, batch_sampler=val_batches, num_workers=0)
    return train_loader(ds.train, cfg, ctx, cfg.seed), val_dl
