"""From the user's options and the data to the resolved configuration a run saves.

`check_options` rejects bad values before the data is scanned; `resolve` is the one place
where automatic values (epochs, patch and batch size, loader workers, flips, encoder,
normalisation statistics) become concrete. It is pure: the same options and data give the
same resolved configs, and a resolved config resolves to itself (which is how --resume
reuses a saved one).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence

from segcli.checkpoint import Checkpoint
from segcli.config import GAN_MODES, PRECISIONS, SEG_LOSSES, DataInfo, ModelConfig, TrainConfig
from segcli.data.balance import suggest_img_size
from segcli.errors import UserError
from segcli.models import DISCRIMINATORS, ENCODERS, lookup, resolve_encoder
from segcli.train.loggers import resolve_logger
from segcli.visualize import default_bands, parse_bands

# Widest U-Net stage allowed: base_channels * 2**depth. 4096 is far beyond useful and still fits
# in memory; without a cap a typo like --depth 12 allocates tens of GB before saying anything.
MAX_WIDTH = 4096
EPOCHS, EPOCH_CAP_WITH_TIME = 50, 1000
SEMI_DEFAULTS = {"consistency": (0.9, 1.0), "adversarial": (0.2, 0.1), "flaw": (0.9, 1.0)}  # (threshold, weight)
# per --gan family: (adv_weight, d_every, lr_d); flaw's D is the small error estimator (AdamW), whose
# step costs a fraction of the real/fake D's, and its term has another scale
GAN_DEFAULTS = {"flaw": (0.1, 4, 2e-3), "real/fake": (0.01, 2, 2e-4)}
# Binary masks (one output channel) with the automatic encoder: a decoder half as wide (a third fewer
# FLOPs, so ~1.4x the steps in a budget) and twice the learning rate: +0.02 validation mIoU on ISBI
# in 2 minutes. Eleven-class street scenes lost 0.02 with the narrower decoder, so they keep the
# encoder's own widths and 1e-3 (docs/benchmarks.md, "Time to a good model").
BINARY_DECODER, BINARY_LR, LR = [128, 64, 32, 16, 16], 2e-3, 1e-3


def gan_defaults(gan: str) -> tuple[float, int, float]:
    return GAN_DEFAULTS["flaw" if gan == "flaw" else "real/fake"]


@dataclass(frozen=True)
class Resolved:
    train: TrainConfig
    model: ModelConfig
    data: DataInfo


def resolve(cfg: TrainConfig, mcfg: ModelConfig, info: DataInfo, train_sizes: Sequence[tuple[int, int]],
            device_type: str, stats: Optional[tuple[list[float], list[float]]] = None) -> Resolved:
    """The run's configs with every automatic value filled in.

    `train_sizes`: (w, h) of the training images; `stats`: per-channel (mean, std) of the
    training images, None to keep `info`'s (a resumed run keeps the statistics it trained with).
    """
    img_size = cfg.img_size if cfg.img_size > 0 else suggest_img_size(train_sizes)
    if cfg.workers >= 0:
        workers = cfg.workers
    else:  # on the CPU a loader process would take cores from the step; beside a GPU it hides decode/augment time
        workers = min(4, max(0, (os.cpu_count() or 1) - 1)) if device_type == "cuda" else 0
    train = replace(
        cfg,
        epochs=cfg.epochs or (EPOCH_CAP_WITH_TIME if cfg.time else EPOCHS),  # with --time the budget decides
        lr_g=cfg.lr_g or (BINARY_LR if info.binary else LR),
        img_size=img_size,
        batch_size=cfg.batch_size if cfg.batch_size > 0 else 8 if img_size <= 128 else 4 if img_size <= 320 else 2,
        workers=workers,
        # gray (microscopy, medical) and multi-band data (aerial, satellite, multi-channel microscopy)
        # have no 'up'; photos do
        orientation_free=info.in_channels != 3 if cfg.orientation_free is None else cfg.orientation_free,
        logger=resolve_logger(cfg.logger),
        semi_threshold=cfg.semi_threshold if cfg.semi_threshold is not None else SEMI_DEFAULTS[cfg.semi][0],
        semi_weight=cfg.semi_weight if cfg.semi_weight is not None else SEMI_DEFAULTS[cfg.semi][1],
        **_gan_values(cfg),
    )
    data = info if stats is None else replace(info, mean=list(stats[0]), std=list(stats[1]))
    bands = parse_bands(cfg.bands, info.in_channels) if cfg.bands else info.bands or default_bands(info.in_channels)
    data = replace(data, bands=bands)
    return Resolved(train, replace(mcfg, encoder=resolve_encoder(mcfg), decoder_channels=_decoder(mcfg, info)), data)


def _decoder(mcfg: ModelConfig, info: DataInfo) -> list[int]:
    """The decoder widths; automatic only for the automatic encoder, so a resolved (saved) config,
    which names its encoder, keeps the widths its weights have."""
    if mcfg.decoder_channels or mcfg.encoder != "auto" or resolve_encoder(mcfg) != "resnet18" or not info.binary:
        return list(mcfg.decoder_channels)
    return list(BINARY_DECODER)


def _number(name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False,
            high_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        rng = f"{bound}" + (f" and {'<' if high_open else '<='} {high:g}" if math.isfinite(high) else "")
        raise UserError(f"--{name.replace('_', '-')} {value}: must be a number {rng}")


def _gan_values(cfg: TrainConfig) -> dict[str, object]:
    adv_weight, d_every, lr_d = gan_defaults(cfg.gan)
    semi_adv = 0.001 if cfg.semi == "adversarial" else adv_weight
    return {"adv_weight": adv_weight if cfg.adv_weight is None else cfg.adv_weight,
            "d_every": cfg.d_every or d_every, "lr_d": cfg.lr_d or lr_d,
            "semi_adv_weight": semi_adv if cfg.semi_adv_weight is None else cfg.semi_adv_weight}


def check_options(cfg: TrainConfig, mcfg: ModelConfig) -> None:
    """Reject option values that would fail (or silently misbehave) later, before the data scan."""
    if cfg.gan not in GAN_MODES:
        raise UserError(f"--gan '{cfg.gan}': expected {', '.join(GAN_MODES[:-1])} or none")
    if str(cfg.precision).lower() not in PRECISIONS:
        raise UserError(f"--precision '{cfg.precision}': expected auto, 32, bf16 or 16")
    if str(cfg.compile).lower() not in ("auto", "on", "off"):
        raise UserError(f"--compile '{cfg.compile}': expected auto, on or off")
    if cfg.loss not in SEG_LOSSES or not (isinstance(cfg.focal_gamma, (int, float)) and cfg.focal_gamma >= 0):
        raise UserError(f"--loss '{cfg.loss}' / --focal-gamma {cfg.focal_gamma}: expected ce or focal, gamma >= 0")
    if cfg.epochs is not None and not (isinstance(cfg.epochs, int) and cfg.epochs >= 1):
        raise UserError(f"--epochs {cfg.epochs}: must be at least 1 (leave it out for the default: 50, "
                        "or as many as --time allows)")
    for name in ("batch_size", "patience"):  # 0 = automatic / off
        _number(name, getattr(cfg, name), 0)
    _number("workers", cfg.workers, -1)  # -1 = automatic
    _number("d_every", cfg.d_every, 0)  # 0 = automatic
    _number("adv_warmup", cfg.adv_warmup, -1)  # -1 = automatic
    _number("semi_start", cfg.semi_start, -1)  # negative = automatic
    if not isinstance(cfg.img_size, int) or (cfg.img_size != 0 and not 8 <= cfg.img_size <= 8192):
        raise UserError(f"--img-size {cfg.img_size}: use 0 (from the data) or a patch size from 8 to 8192")
    _number("val_split", cfg.val_split, 0, 0.99)
    _number("lr", cfg.lr_g, 0, 10)  # 0 = automatic
    _number("lr_d", cfg.lr_d, 0, 10)  # 0 = automatic
    for name in ("adv_weight", "semi_adv_weight"):
        if getattr(cfg, name) is not None:
            _number(name, getattr(cfg, name), 0)
    _number("weight_decay", cfg.weight_decay, 0)
    _number("ema", cfg.ema, 0, 1, high_open=True)
    _number("progressive", cfg.progressive, 0, 1, high_open=True)
    _number("label_smoothing", cfg.label_smoothing, 0, 0.5)
    _number("onehot_tau", cfg.onehot_tau, 0, 1, low_open=True)
    if cfg.ignore_index is not None:
        _number("ignore_index", cfg.ignore_index, 0, 65535)
    if cfg.bands:
        parse_bands(cfg.bands)
    if cfg.init and (cfg.pretrained or cfg.weights):
        raise UserError("--init starts from a segcli checkpoint's weights; leave out --pretrained/--weights")
    resolve_logger(cfg.logger)  # an unknown name, or a logger whose package is missing: exit 2 now
    _check_model(mcfg)
    if cfg.unlabeled and not Path(cfg.unlabeled).is_dir():
        raise UserError(f"--unlabeled {cfg.unlabeled}: folder not found; pass a folder of images without masks")
    if cfg.semi not in SEMI_DEFAULTS:
        raise UserError(f"--semi '{cfg.semi}': expected consistency, adversarial or flaw")
    if cfg.semi_gate not in ("none", "discriminator"):
        raise UserError(f"--semi-gate '{cfg.semi_gate}': expected none or discriminator")
    _number("semi_every", cfg.semi_every, 1)
    for name in ("semi_threshold", "semi_weight"):
        if getattr(cfg, name) is not None:
            _number(name, getattr(cfg, name), 0, 1 if name == "semi_threshold" else math.inf)
    if cfg.unlabeled:
        _check_semi(cfg)


def _check_semi(cfg: TrainConfig) -> None:
    """The --semi methods that need a particular discriminator get it, or a one-line way out."""
    gate = " --semi-gate discriminator" if cfg.semi_gate != "none" else ""
    if cfg.gan == "none" and (cfg.semi != "consistency" or gate):
        raise UserError(f"--unlabeled with --semi {cfg.semi}{gate} needs a discriminator: use --gan flaw "
                        "(or --semi consistency without the gate)")
    if cfg.semi == "adversarial" and cfg.gan == "flaw":
        raise UserError("--semi adversarial needs the real/fake discriminator of --gan lsgan|vanilla|hinge; "
                        "under --gan flaw use --semi flaw (consistency + flaw correction) or --semi consistency")
    if cfg.semi == "flaw" and cfg.gan != "flaw":
        raise UserError(f"--semi flaw needs --gan flaw (its discriminator predicts G's errors); under --gan {cfg.gan} "
                        "use --semi consistency or adversarial")


def _check_model(mcfg: ModelConfig) -> None:
    _number("depth", mcfg.depth, 1, 8)
    _number("base_channels", mcfg.base_channels, 1, 1024)
    _number("disc_channels", mcfg.disc_channels, 1, 1024)
    if mcfg.base_channels * 2**mcfg.depth > MAX_WIDTH:
        raise UserError(
            f"--base-channels {mcfg.base_channels} with --depth {mcfg.depth} gives {mcfg.base_channels * 2**mcfg.depth} "
            f"channels at the bottom of the U-Net (at most {MAX_WIDTH}); lower one of them"
        )
    if mcfg.encoder != "auto":
        lookup(ENCODERS, mcfg.encoder, "encoder")
    lookup(DISCRIMINATORS, mcfg.discriminator, "discriminator")
    blocks = mcfg.depth if resolve_encoder(mcfg) == "unet" else 5  # decoder blocks up to stride 1
    if mcfg.decoder_channels and len(mcfg.decoder_channels) != blocks:
        raise UserError(f"--decoder-channels {','.join(map(str, mcfg.decoder_channels))}: the {resolve_encoder(mcfg)} "
                        f"decoder has {blocks} blocks; give {blocks} widths, deepest first")


def resume_state(path: Optional[str], project: str) -> tuple[TrainConfig, ModelConfig, Optional[Checkpoint]]:
    """The configs and last.pt of the run to continue (the latest under `project` without a path);
    the checkpoint is None when that run had finished."""
    from segcli.runs import latest_run

    if path:
        p = Path(path)
        ckpt_path = p / "weights" / "last.pt" if p.is_dir() else p
    else:
        run = latest_run(project)
        if run is None:
            raise UserError(f"nothing to resume: no run under {project}/; pass a checkpoint path")
        ckpt_path = run / "weights" / "last.pt"
    if not ckpt_path.is_file() and ckpt_path.name == "last.pt" and ckpt_path.parent.is_dir():
        raise UserError(f"{ckpt_path}: not written yet (the run stopped before its first epoch ended); "
                        "start the run again instead of resuming")
    ckpt = Checkpoint.load(ckpt_path)
    if not ckpt.resumable:
        raise UserError(f"{ckpt_path}: holds no optimizer state (a best.pt?); resume from the run's last.pt")
    run_dir = ckpt_path.parent.parent
    cfg = replace(ckpt.train, project=str(run_dir.parent), name=run_dir.name)
    early_stopped = cfg.patience and ckpt.bad_epochs >= cfg.patience
    if ckpt.finished or ckpt.epoch >= (cfg.epochs or 0) or early_stopped:
        return cfg, ckpt.model, None
    return cfg, ckpt.model, ckpt
