"""A training run's state: built once by `setup`, carried from epoch to epoch.

The configs in it are the resolved ones (segcli.train.resolve) and never change; what does
change between epochs is the weights, the optimizers, the history and the best-so-far tracker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch.utils.data import DataLoader

from segcli.checkpoint import Checkpoint
from segcli.config import DataInfo, ModelConfig, TrainConfig
from segcli.data import MaskStats, class_pixel_counts, prepare
from segcli.data.balance import resolve_class_weights
from segcli.data.dataset import channel_stats
from segcli.device import Precision, select_precision
from segcli.models import build_discriminator, build_generator
from segcli.runs import new_run_dir, parse_duration
from segcli.errors import UserError
from segcli.train import compile as compiling, distributed, safety
from segcli.train.ema import ModelEMA, build_ema
from segcli.train.estimator import EstimatorTrainer
from segcli.train.gan import StepSettings
from segcli.train.loaders import build_loaders, load_datasets
from segcli.train.resolve import check_options, resolve
from segcli.train.schedule import Clock
from segcli.train.consistency import ConsistencySet, ConsistencySettings
from segcli.train.semi import SemiSettings, UnlabeledSet


@dataclass
class BestTracker:
    """The best validation so far, and early stopping (`--patience` validations without a gain)."""

    patience: int = 0
    best_fitness: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0

    def update(self, epoch: int, fitness: float) -> bool:
        """Record one validation; True when it is the best so far."""
        if fitness > self.best_fitness:
            self.best_fitness, self.best_epoch, self.bad_epochs = fitness, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def exhausted(self) -> bool:
        return bool(self.patience) and self.bad_epochs >= self.patience


@dataclass
class Run:
    cfg: TrainConfig
    mcfg: ModelConfig
    info: DataInfo
    ctx: distributed.Context
    guard: safety.RunGuard
    precision: Precision
    clock: Clock
    gen: torch.nn.Module
    disc: Optional[torch.nn.Module]
    gen_t: torch.nn.Module  # the DDP-wrapped modules under torchrun (the same modules otherwise)
    disc_t: Optional[torch.nn.Module]
    opt_g: torch.optim.Optimizer
    opt_d: Optional[torch.optim.Optimizer]
    scalers: tuple[Any, Any]
    settings: StepSettings
    train_dl: DataLoader
    val_dl: DataLoader
    unlabeled: Optional[Union[UnlabeledSet, ConsistencySet]]
    ema: Optional[ModelEMA]
    run_dir: Path
    data_summary: dict[str, Any]
    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    tracker: BestTracker = field(default_factory=BestTracker)
    since_val: float = 0.0  # training seconds since the last validation
    samples: list[tuple[int, Any, Any]] = field(default_factory=list)  # the latest validation's first masks
    best_samples: list[tuple[int, Any, Any]] = field(default_factory=list)  # ... and the best validation's
    last: Optional[Checkpoint] = None  # what last.pt holds
    estimator: Optional[EstimatorTrainer] = None  # the quality estimator (TrainConfig.quality)
    compiled: Optional[Any] = None  # segcli.train.compile.Fallback when the step runs compiled

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @property
    def weights(self) -> Path:
        return self.run_dir / "weights"

    use_ema: bool = False  # the latest validation scored the weights' moving average higher

    @property
    def model(self) -> torch.nn.Module:
        """The generator users get: the moving average when it validated better, else the weights."""
        return self.ema.module if self.ema is not None and self.use_ema else self.gen

    def checkpoint(self, epoch: int, metrics: dict[str, float]) -> Checkpoint:
        """This epoch's best.pt (last.pt adds the optimizer states and the raw weights)."""
        t = self.tracker
        return Checkpoint(
            train=self.cfg, model=self.mcfg, data=self.info, output=self.gen.output,
            generator=self.model.state_dict(), discriminator=self.disc.state_dict() if self.disc is not None else None,
            epoch=epoch, best_fitness=t.best_fitness, best_epoch=t.best_epoch, bad_epochs=t.bad_epochs,
            history=list(self.history), metrics={"mIoU": metrics["mIoU"], "mDice": metrics["mDice"]},
            elapsed=self.clock.elapsed(), data_summary=self.data_summary,
            estimator=self.estimator.net.state_dict() if self.estimator is not None else None,
            estimator_config=self.estimator.config if self.estimator is not None else {},
        )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup(ctx: distributed.Context, cfg: TrainConfig, mcfg: ModelConfig, resume: Optional[Checkpoint],
          guard: safety.RunGuard, started: Optional[float] = None) -> Run:
    """Everything a run needs before its first step: resolved configs, data, models, optimizers, folder.

    `started`: when the command began; the --time budget counts from then.
    """
    check_options(cfg, mcfg)
    budget = parse_duration(cfg.time) if cfg.time else None
    clock = Clock(budget, resume.elapsed if resume is not None else 0.0, ctx.agree, started)
    precision = select_precision(cfg.precision, ctx.device)
    prep = prepare(cfg.data, cfg.val_split, cfg.seed, cfg.ignore_index)
    datasets = load_datasets(cfg, resume.data if resume is not None else prep.info, prep)
    stats = channel_stats(datasets.train) if resume is None else None  # a resumed run keeps its statistics
    r = resolve(cfg, mcfg, datasets.train.info, prep.train_sizes, ctx.device.type, stats)
    cfg, mcfg, info = r.train, r.model, r.data
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch size: pick the fastest conv algorithms once
    seed_everything(cfg.seed)
    train_dl, val_dl = build_loaders(cfg, info, datasets, prep, ctx)
    gen, disc = _models(cfg, mcfg, info, ctx, resume)
    opt_g = torch.optim.AdamW(gen.parameters(), lr=cfg.lr_g, weight_decay=cfg.weight_decay)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999)) if disc is not None else None
    unlabeled = _unlabeled(cfg, info, ctx, precision) if cfg.unlabeled else None
    train_pixels = class_pixel_counts(MaskStats(pixels=prep.train_pixels), info)
    class_weights = resolve_class_weights(cfg.class_weights, train_pixels, info.num_classes)
    settings = StepSettings(cfg.gan, cfg.adv_weight, cfg.label_smoothing, cfg.onehot_tau, class_weights,
                            cfg.focal_gamma if cfg.loss == "focal" else 0.0, ctx.batch_sum)
    summary = {"train_images": len(prep.splits.train), "val_images": len(prep.splits.val),
               "class_pixels": train_pixels.tolist(), "class_weights": class_weights}
    if resume is not None:
        run_dir = Path(resume.path).parent.parent  # RUN/weights/last.pt
    else:  # rank 0 picks the folder (exp, exp2, ...) and tells the others
        run_dir = ctx.share(new_run_dir(cfg.project, cfg.name, cfg.exist_ok) if ctx.main else None)
    run = Run(cfg, mcfg, info, ctx, guard, precision, clock, gen, disc, gen, disc, opt_g, opt_d,
              (precision.scaler(), precision.scaler()), settings, train_dl, val_dl, unlabeled, build_ema(gen, cfg.ema),
              run_dir, summary, tracker=BestTracker(cfg.patience))
    if cfg.quality:  # built after G and D, so their initial weights do not depend on it
        run.estimator = EstimatorTrainer(info.in_channels, info.num_classes, gen.output, ctx.device, precision.autocast,
                                         precision.scaler())
        clock.calibration = True
    if resume is not None:
        _restore(run, resume)
    guard.run_dir, guard.saved_epoch = run_dir, run.start_epoch
    if unlabeled is not None and disc is not None:
        unlabeled.resume(run.history, cfg.epochs, budget, run.weights / "best.pt", gen, disc)
    run.gen_t, run.disc_t = ctx.wrap(gen), ctx.wrap(disc)  # DDP after any resumed weights are loaded
    if run.estimator is not None:
        run.estimator.net_t = ctx.wrap(run.estimator.net)
    run.compiled = compiling.apply(run, budget)  # after DDP; checkpoints keep saving the bare modules
    return run


def _unlabeled(cfg: TrainConfig, info: DataInfo, ctx: distributed.Context,
               precision: Precision) -> Union[UnlabeledSet, ConsistencySet]:
    """The unlabeled images and how they teach (--semi)."""
    if cfg.semi == "consistency":
        settings = ConsistencySettings(cfg.semi_threshold, cfg.semi_weight, cfg.semi_every, cfg.semi_gate)
        return ConsistencySet(cfg, info, ctx, settings)
    semi = SemiSettings(cfg.semi_threshold, cfg.semi_weight, cfg.semi_adv_weight, cfg.semi_start)
    return UnlabeledSet(cfg, info, ctx, ctx.device, precision.autocast, semi)


def _models(cfg: TrainConfig, mcfg: ModelConfig, info: DataInfo, ctx: distributed.Context,
            resume: Optional[Checkpoint]) -> tuple[torch.nn.Module, Optional[torch.nn.Module]]:
    gen = build_generator(mcfg, info)
    if (cfg.pretrained or cfg.weights) and resume is None:
        if not hasattr(gen.encoder, "load_imagenet"):
            raise UserError(f"--pretrained/--weights need a ResNet encoder; '{mcfg.encoder}' trains from scratch")
        gen.encoder.load_imagenet(cfg.weights)
    gen = distributed.convert_sync_bn(gen, ctx) if cfg.sync_bn else gen
    # channels_last: ~20% faster convolutions on this CPU (oneDNN) and on tensor cores
    gen = gen.to(ctx.device, memory_format=torch.channels_last)
    disc = None
    if cfg.gan != "none":
        disc = build_discriminator(mcfg, info).to(ctx.device, memory_format=torch.channels_last)
    return gen, disc


def _restore(run: Run, ckpt: Checkpoint) -> None:
    """Weights (and their average), optimizer states, history and the best-so-far from a last.pt."""
    run.gen.load_state_dict(ckpt.train_generator if ckpt.train_generator is not None else ckpt.generator)
    if run.ema is not None and ckpt.ema_generator is not None:
        run.ema.load(ckpt.ema_generator, ckpt.ema_updates)
        run.use_ema = bool(run.history and run.history[-1].get("ema") == 1)
    if run.disc is not None and ckpt.discriminator is not None:
        run.disc.load_state_dict(ckpt.discriminator)
    run.opt_g.load_state_dict(ckpt.opt_g)
    if run.opt_d is not None and ckpt.opt_d is not None:
        run.opt_d.load_state_dict(ckpt.opt_d)
    if run.estimator is not None and ckpt.estimator is not None:
        run.estimator.net.load_state_dict(ckpt.estimator)
        if ckpt.opt_e is not None:
            run.estimator.opt.load_state_dict(ckpt.opt_e)
    run.history = list(ckpt.history)
    run.start_epoch = ckpt.epoch
    run.tracker = BestTracker(run.cfg.patience, ckpt.best_fitness, ckpt.best_epoch, ckpt.bad_epochs)
