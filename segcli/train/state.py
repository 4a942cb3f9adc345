"""A training run's state: built once by `setup`, carried from epoch to epoch.

The configs in it are the resolved ones (segcli.train.resolve) and never change; what does
change between epochs is the weights, the optimizers, the history and the best-so-far tracker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

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
from segcli.train import compile as compiling, distributed, safety, warmstart
from segcli.train.adversary import FlawDiscriminator, QualityJudge, RealFakeDiscriminator
from segcli.train.ema import EmaPart, ModelEMA, build_ema
from segcli.train.gan import StepSettings, adam
from segcli.train.parts import Part
from segcli.train.loaders import build_loaders, load_datasets, low_res_loader
from segcli.train.resolve import check_options, resolve
from segcli.train.schedule import Clock
from segcli.train.unlabeled import UnlabeledPart, unlabeled_set


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
    gen_t: torch.nn.Module  # the DDP-wrapped generator under torchrun (the same module otherwise)
    opt_g: torch.optim.Optimizer
    scaler: Any  # fp16's grad scaler, or None
    settings: StepSettings
    train_dl: DataLoader
    val_dl: DataLoader
    parts: list[Part]  # the discriminator, the quality judge, the unlabeled images, the moving average
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
    compiled: Optional[Any] = None  # segcli.train.compile.Fallback when the step runs compiled
    low_dl: Optional[DataLoader] = None  # --progressive: the half-resolution loader of the run's first part

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

    def checkpoint(self, epoch: int, metrics: dict[str, float], last: bool = False) -> Checkpoint:
        """This epoch's best.pt; with `last`, last.pt (the optimizer states and the raw weights too)."""
        t = self.tracker
        fields: dict[str, Any] = {}
        for part in self.parts:
            fields.update(part.state(last))
        if last:
            fields.update(opt_g=self.opt_g.state_dict(),
                          train_generator=self.gen.state_dict() if self.ema is not None else None)
        return Checkpoint(
            train=self.cfg, model=self.mcfg, data=self.info, output=self.gen.output, generator=self.model.state_dict(),
            epoch=epoch, best_fitness=t.best_fitness, best_epoch=t.best_epoch, bad_epochs=t.bad_epochs,
            history=list(self.history), metrics={"mIoU": metrics["mIoU"], "mDice": metrics["mDice"]},
            elapsed=self.clock.elapsed(), data_summary=self.data_summary, **fields)


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
    init = warmstart.load_init(cfg.init) if cfg.init and resume is None else None
    mcfg = warmstart.model_config(init, mcfg) if init is not None else mcfg
    budget = parse_duration(cfg.time) if cfg.time else None
    clock = Clock(budget, resume.elapsed if resume is not None else 0.0, ctx.agree, started)
    precision = select_precision(cfg.precision, ctx.device)
    prep = prepare(cfg.data, cfg.val_split, cfg.seed, cfg.ignore_index)
    base = prep.info if init is None else warmstart.data_info(init, prep.info, cfg.data)
    base = resume.data if resume is not None else base
    datasets = load_datasets(cfg, base, prep)
    # a resumed run, or one started from other weights, keeps the statistics those weights expect
    stats = channel_stats(datasets.train) if resume is None and init is None else None
    r = resolve(cfg, mcfg, datasets.train.info, prep.train_sizes, ctx.device.type, stats)
    cfg, mcfg, info = r.train, r.model, r.data
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch size: pick the fastest conv algorithms once
    seed_everything(cfg.seed)
    train_dl, val_dl = build_loaders(cfg, info, datasets, prep, ctx)
    gen = _generator(cfg, mcfg, info, ctx, resume, init)
    opt_g = adam(gen.parameters(), lr=cfg.lr_g, weight_decay=cfg.weight_decay)
    train_pixels = class_pixel_counts(MaskStats(pixels=prep.train_pixels), info)
    class_weights = resolve_class_weights(cfg.class_weights, train_pixels, info.num_classes)
    settings = StepSettings(cfg.gan, cfg.label_smoothing, cfg.onehot_tau, class_weights,
                            cfg.focal_gamma if cfg.loss == "focal" else 0.0, ctx.batch_sum)
    summary = {"train_images": len(prep.splits.train), "val_images": len(prep.splits.val),
               "class_pixels": train_pixels.tolist(), "class_weights": class_weights}
    if resume is not None:
        run_dir = Path(resume.path).parent.parent  # RUN/weights/last.pt
    else:  # rank 0 picks the folder (exp, exp2, ...) and tells the others
        run_dir = ctx.share(new_run_dir(cfg.project, cfg.name, cfg.exist_ok) if ctx.main else None)
    ema = build_ema(gen, cfg.ema)
    parts = _parts(cfg, mcfg, info, ctx, precision, settings, gen, ema)
    if init is not None:  # EMA above already starts from G's loaded weights
        summary["init"] = {"from": init.where, "loaded": ["generator", *(n for p in parts for n in p.warm_start(init))]}
    clock.calibration = cfg.quality
    run = Run(cfg, mcfg, info, ctx, guard, precision, clock, gen, gen, opt_g, precision.scaler(), settings,
              train_dl, val_dl, parts, ema, run_dir, summary, tracker=BestTracker(cfg.patience))
    if cfg.progressive > 0:
        run.low_dl = low_res_loader(datasets.train, cfg, info, ctx, gen.output.size_multiple)
    if resume is not None:
        _restore(run, resume)
    guard.run_dir, guard.saved_epoch = run_dir, run.start_epoch
    run.gen_t = ctx.wrap(gen)  # DDP after any resumed weights are loaded
    for part in parts:
        part.distribute(ctx)
    run.compiled = compiling.apply(run, budget)  # after DDP; checkpoints keep saving the bare modules
    return run


def _parts(cfg: TrainConfig, mcfg: ModelConfig, info: DataInfo, ctx: distributed.Context, precision: Precision,
           settings: StepSettings, gen: torch.nn.Module, ema: Optional[ModelEMA]) -> list[Part]:
    """What trains beside G: the discriminator (--gan), the quality judge (--quality), the unlabeled
    images (--unlabeled) and the moving average (--ema), in the order a step runs them."""
    parts: list[Part] = []
    adversary: Optional[Any] = None
    # built after G, each in a fixed order, so G's initial weights never depend on the options
    if cfg.gan == "flaw":
        adversary = FlawDiscriminator(cfg, info.in_channels, info.num_classes, gen.output, ctx.device, precision)
    elif cfg.gan != "none":
        disc = build_discriminator(mcfg, info).to(ctx.device, memory_format=torch.channels_last)
        adversary = RealFakeDiscriminator(disc, cfg, settings, precision)
    if adversary is not None:
        parts.append(adversary)
    if cfg.quality and cfg.gan != "flaw":
        parts.append(QualityJudge(cfg, info.in_channels, info.num_classes, gen.output, ctx.device, precision))
    if cfg.unlabeled:
        images = unlabeled_set(cfg, info, ctx, precision)
        parts.append(UnlabeledPart(images, adversary, ema, cfg, precision, ctx.device))
    if ema is not None:
        parts.append(EmaPart(ema))
    return parts


def _generator(cfg: TrainConfig, mcfg: ModelConfig, info: DataInfo, ctx: distributed.Context,
               resume: Optional[Checkpoint], init: Optional[Checkpoint] = None) -> torch.nn.Module:
    gen = build_generator(mcfg, info)
    if init is not None:  # the weights users got from that run (best.pt's: the moving average when it won)
        gen.load_state_dict(init.generator)
    if (cfg.pretrained or cfg.weights) and resume is None:
        if not hasattr(gen.encoder, "load_imagenet"):
            raise UserError(f"--pretrained/--weights need a ResNet encoder; '{mcfg.encoder}' trains from scratch")
        gen.encoder.load_imagenet(cfg.weights)
    gen = distributed.convert_sync_bn(gen, ctx) if cfg.sync_bn else gen
    # channels_last: ~20% faster convolutions on this CPU (oneDNN) and on tensor cores
    return gen.to(ctx.device, memory_format=torch.channels_last)


def _restore(run: Run, ckpt: Checkpoint) -> None:
    """Weights, optimizer states, history and the best-so-far from a last.pt; then each part's state."""
    run.gen.load_state_dict(ckpt.train_generator if ckpt.train_generator is not None else ckpt.generator)
    run.opt_g.load_state_dict(ckpt.opt_g)
    run.history = list(ckpt.history)
    run.start_epoch = ckpt.epoch
    run.tracker = BestTracker(run.cfg.patience, ckpt.best_fitness, ckpt.best_epoch, ckpt.bad_epochs)
    for part in run.parts:
        part.restore(ckpt, run)
