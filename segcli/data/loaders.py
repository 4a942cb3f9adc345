"""Loaders for training: the options that depend on the data or the machine, and the DataLoaders.

Under torchrun each process loads its part of every global batch and of the validation set.
"""

from __future__ import annotations

import os
from typing import Optional

import torch
from torch.utils.data import DataLoader

from segcli import distributed
from segcli.config import DataInfo, TrainConfig
from segcli.data import Prepared
from segcli.data.balance import suggest_img_size
from segcli.data.dataset import SegDataset, SizeGroupedBatches, channel_stats
from segcli.data.scan import verify_decodable
from segcli.data.transforms import eval_transforms, train_transforms


def resolve_auto(cfg: TrainConfig, prep: Prepared, device: Optional[torch.device] = None) -> None:
    """Fill the options whose default depends on the data or the machine (recorded in the saved config)."""
    if cfg.workers < 0:
        # on the CPU a loader process would take cores from the step; beside a GPU it hides decode/augment time
        gpu = device is not None and device.type == "cuda"
        cfg.workers = min(4, max(0, (os.cpu_count() or 1) - 1)) if gpu else 0
    if cfg.img_size <= 0:
        cfg.img_size = suggest_img_size(prep.train_sizes)
    if cfg.batch_size <= 0:
        cfg.batch_size = 8 if cfg.img_size <= 128 else 4 if cfg.img_size <= 320 else 2
    if cfg.orientation_free is None:
        # single-channel data (microscopy, medical) has no 'up'; photos do
        cfg.orientation_free = prep.info.in_channels == 1


def train_transform(cfg: TrainConfig, info: DataInfo):
    """The training augmentation for this run's options and data."""
    return train_transforms(cfg.img_size, info.mean, info.std, info.in_channels, bool(cfg.orientation_free), cfg.augment)


def train_loader(ds: SegDataset, cfg: TrainConfig, ctx: distributed.Context, seed: int) -> DataLoader:
    """Shuffled crops of `ds` in this process's share of each global batch; set_epoch() reshuffles."""
    sampler = distributed.train_sampler(ds, seed, ctx)
    batch = ctx.local_batch(cfg.batch_size)
    return DataLoader(
        ds, batch_size=batch, sampler=sampler, drop_last=len(sampler) >= batch,
        num_workers=cfg.workers, persistent_workers=cfg.workers > 0, pin_memory=torch.cuda.is_available(),
    )


def build_loaders(cfg: TrainConfig, info: DataInfo, prep: Prepared, fit_stats: bool,
                  ctx: Optional[distributed.Context] = None) -> tuple[DataLoader, DataLoader]:
    """Datasets (decoded into memory when they fit) and their loaders; `fit_stats` sets info.mean/std."""
    ctx = ctx or distributed.Context()
    train_ds = SegDataset(prep.splits.train, info, transform=None, cache=cfg.cache)
    val_ds = SegDataset(prep.splits.val, info, transform=None, cache=cfg.cache)
    cached = cfg.cache and train_ds.preload() and val_ds.preload()
    if not cached:  # nothing decoded every image: do it now, so a truncated file fails before epoch 1
        verify_decodable(prep.splits.train + prep.splits.val)
    if fit_stats:
        info.mean, info.std = channel_stats(train_ds)
    train_ds.transform = train_transform(cfg, info)
    val_ds.transform = eval_transforms(info.mean, info.std)
    batch = ctx.local_batch(cfg.batch_size)
    val_batches = distributed.shard_batches(SizeGroupedBatches(prep.val_sizes, batch), ctx)
    val_dl = DataLoader(val_ds, batch_sampler=val_batches, num_workers=0)
    return train_loader(train_ds, cfg, ctx, cfg.seed), val_dl
