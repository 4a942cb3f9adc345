"""The training engine: one function a command calls, events out, no printing."""

from __future__ import annotations

import csv
import io
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from segcli import checkpoint, distributed, safety
from segcli.config import DataInfo, ModelConfig, TrainConfig, from_dict, save_yaml, to_dict
from segcli.data import MaskStats, Prepared, class_pixel_counts, prepare
from segcli.data.balance import resolve_class_weights
from segcli.data.dataset import SegDataset
from segcli.data.loaders import build_loaders, resolve_auto
from segcli.device import Precision, describe, select_precision
from segcli.errors import UserError
from segcli.gan import StepSettings, train_step
from segcli.schedule import Clock, lr_at, ramp, set_lr
from segcli.semi import SemiSettings, UnlabeledSet
from segcli.metrics import ConfusionMatrix
from segcli.models import build_discriminator, build_generator, resolve_encoder
from segcli.runs import new_run_dir, parse_duration

CSV_FIELDS = ["epoch", "g_loss", "g_seg", "g_adv", "d_loss", "val_mIoU", "val_Dice", "lr_g", "lr_d", "seconds",
              "train_seconds", "semi_pixels"]
LOSS_KEYS = ("g_loss", "g_seg", "g_adv", "d_loss")


class Callbacks(Protocol):
    def on_start(self, info: dict[str, Any]) -> None: ...
    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...
    def on_step(self, step: int, losses: dict[str, float]) -> None: ...
    def on_epoch_end(self, row: dict[str, Any]) -> None: ...


class NoCallbacks:
    def on_start(self, info: dict[str, Any]) -> None: ...
    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...
    def on_step(self, step: int, losses: dict[str, float]) -> None: ...
    def on_epoch_end(self, row: dict[str, Any]) -> None: ...


@dataclass
class TrainResult:
    run_dir: Path
    epochs_run: int
    best_epoch: int
    best: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""
    unlabeled: str = ""  # what became of --unlabeled


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@torch.inference_mode()
def validate(gen: torch.nn.Module, loader: DataLoader, info: DataInfo, device: torch.device,
             precision: Precision, keep: int = 0, limit: bool = False,
             reduce: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> tuple[dict[str, Any], list]:
    """Full-resolution validation; returns metrics and up to `keep` (image, truth, pred) samples.

    `limit` stops once `keep` samples are collected (the metrics then cover only those).
    `reduce` sums the confusion matrix over processes that each validated a part of the set.
    """
    gen.eval()
    cm = ConfusionMatrix(info.num_classes)
    samples: list = []
    for image, labels in loader:
        image = image.to(device, non_blocking=True)
        with precision.autocast():
            logits = gen(image).float()
        pred = (logits[:, 0] > 0).long() if info.binary else logits.argmax(1)
        cm.update(pred.cpu().numpy(), labels.numpy())
        for i in range(min(keep - len(samples), image.shape[0])):
            samples.append((i, labels[i].numpy().astype(np.uint8), pred[i].cpu().numpy().astype(np.uint8)))
        if limit and len(samples) >= keep:
            break
    gen.train()
    if reduce is not None:
        cm.mat = reduce(cm.mat)
    return cm.compute(), samples


def _csv_text(history: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for row in history:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def train(cfg: TrainConfig, mcfg: ModelConfig, callbacks: Optional[Callbacks] = None,
          resume: Optional[dict[str, Any]] = None) -> TrainResult:
    """Train G (and D unless --gan none) on cfg.data; write the run folder; return the outcome.

    Under torchrun every process calls this; they train one model with DDP (segcli.distributed).
    Ctrl-C raises errors.Interrupted naming the run and how to resume it.
    """
    with distributed.session(cfg.device) as ctx, safety.interrupt_guard() as guard:
        return _train(ctx, cfg, mcfg, callbacks, resume, guard)


def _train(ctx: distributed.Context, cfg: TrainConfig, mcfg: ModelConfig, callbacks: Optional[Callbacks],
           resume: Optional[dict[str, Any]], guard: safety.RunGuard) -> TrainResult:
    cb = (callbacks if ctx.main else None) or NoCallbacks()  # one process reports
    safety.check_train_options(cfg, mcfg)
    if cfg.unlabeled and cfg.gan == "none":
        raise UserError("--unlabeled needs a discriminator: use --gan lsgan|vanilla|hinge, not none")
    if cfg.loss not in ("ce", "focal") or cfg.focal_gamma < 0:
        raise UserError(f"--loss '{cfg.loss}' / --focal-gamma {cfg.focal_gamma}: expected ce or focal, gamma >= 0")
    if cfg.epochs == 0:  # with --time the budget decides; the cap only bounds the schedule
        cfg.epochs = 1000 if cfg.time else 50
    budget = parse_duration(cfg.time) if cfg.time else None
    device = ctx.device
    clock = Clock(budget, float(resume["elapsed"]) if resume is not None else 0.0, ctx.agree)
    precision = select_precision(cfg.precision, device)

    prep = prepare(cfg.data, cfg.val_split, cfg.seed, cfg.ignore_index)
    info = prep.info
    if resume is not None:
        info = from_dict(DataInfo, resume["data_info"])
    resolve_auto(cfg, prep, device)
    mcfg.encoder = resolve_encoder(mcfg, info)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch size: pick the fastest conv algorithms once
    seed_everything(cfg.seed)
    train_dl, val_dl = build_loaders(cfg, info, prep, fit_stats=resume is None, ctx=ctx)

    gen = build_generator(mcfg, info)
    if (cfg.pretrained or cfg.weights) and resume is None:
        if not hasattr(gen.encoder, "load_imagenet"):
            raise UserError(f"--pretrained/--weights need a ResNet encoder; '{mcfg.encoder}' trains from scratch")
        gen.encoder.load_imagenet(cfg.weights)
    gen = distributed.convert_sync_bn(gen, ctx) if cfg.sync_bn else gen
    # channels_last: ~20% faster convolutions on this CPU (oneDNN) and on tensor cores
    gen = gen.to(device, memory_format=torch.channels_last)
    disc = build_discriminator(mcfg, info).to(device, memory_format=torch.channels_last) if cfg.gan != "none" else None
    opt_g = torch.optim.AdamW(gen.parameters(), lr=cfg.lr_g, weight_decay=cfg.weight_decay)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999)) if disc is not None else None
    scalers = (precision.scaler(), precision.scaler())

    semi = SemiSettings(cfg.semi_threshold, cfg.semi_weight, cfg.semi_adv_weight, cfg.semi_start)
    unlabeled_set = UnlabeledSet(cfg, info, ctx, device, precision.autocast, semi) if cfg.unlabeled else None
    history: list[dict[str, Any]] = []
    start_epoch, best_fit, best_epoch, bad_epochs = 0, -1.0, 0, 0
    if resume is not None:
        gen.load_state_dict(resume["generator"])
        if disc is not None and resume.get("discriminator") is not None:
            disc.load_state_dict(resume["discriminator"])
        opt_g.load_state_dict(resume["opt_g"])
        if opt_d is not None and resume.get("opt_d") is not None:
            opt_d.load_state_dict(resume["opt_d"])
        history = list(resume["history"])
        start_epoch = int(resume["epoch"])
        best_fit, best_epoch = float(resume["best_fitness"]), int(resume["best_epoch"])
        bad_epochs = int(resume["bad_epochs"])
        run_dir = Path(resume["run_dir"])
    else:  # rank 0 picks the folder (exp, exp2, ...) and tells the others
        run_dir = ctx.share(new_run_dir(cfg.project, cfg.name, cfg.exist_ok) if ctx.main else None)
    weights = run_dir / "weights"
    guard.run_dir, guard.saved_epoch = run_dir, start_epoch
    if unlabeled_set is not None and disc is not None:
        unlabeled_set.resume(history, cfg.epochs, budget, weights / "best.pt", gen, disc)
    if ctx.main:
        checkpoint.make_dirs(weights)
        save_yaml(run_dir / "config.yaml", {"train": to_dict(cfg), "model": to_dict(mcfg), "data_info": to_dict(info)})
        if history:  # a kill between last.pt and metrics.csv: make them agree again before going on
            checkpoint.atomic_write_bytes(run_dir / "metrics.csv", _csv_text(history).encode())
    gen_t, disc_t = ctx.wrap(gen), ctx.wrap(disc)  # DDP after any resumed weights are loaded

    train_pixels = class_pixel_counts(MaskStats(pixels=prep.train_pixels), info)
    class_weights = resolve_class_weights(cfg.class_weights, train_pixels, info.num_classes)
    settings = StepSettings(cfg.gan, cfg.adv_weight, cfg.label_smoothing, cfg.onehot_tau, class_weights,
                            cfg.focal_gamma if cfg.loss == "focal" else 0.0, ctx.batch_sum)
    data_summary = {"train_images": len(prep.splits.train), "val_images": len(prep.splits.val),
                    "class_pixels": train_pixels.tolist(), "class_weights": class_weights}
    steps = len(train_dl)
    world = f" x {ctx.world} processes" if ctx.enabled else ""
    cb.on_start({"run_dir": run_dir, "device": describe(device) + world, "precision": precision.name,
                 "train": len(prep.splits.train), "val": len(prep.splits.val), "info": info,
                 "img_size": cfg.img_size, "start_epoch": start_epoch})
    stopped, epoch, since_val = "", start_epoch, 0.0
    for epoch in range(start_epoch, cfg.epochs):
        t_epoch = time.monotonic()
        # Reseed per epoch: a resumed run replays exactly what the uninterrupted one would.
        seed_everything(cfg.seed + epoch)
        train_dl.sampler.set_epoch(epoch)
        cb.on_epoch_start(epoch + 1, cfg.epochs, steps)
        guard.epoch = epoch + 1
        gen.train()
        if disc is not None:
            disc.train()
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}  # with --d-every, the D losses exist on some steps only
        unlabeled_iter = unlabeled_set.batches(epoch) if unlabeled_set is not None and unlabeled_set.started else None
        for i, (image, labels) in enumerate(train_dl):
            if clock.must_stop():
                stopped = f"time budget {cfg.time} reached"
                break
            progress = max((epoch + i / steps) / cfg.epochs, clock.progress())
            set_lr(opt_g, lr_at(cfg.lr_g, progress))
            set_lr(opt_d, lr_at(cfg.lr_d, progress))
            # an untrained G is uncertain everywhere; a full-strength D would push it to the majority classes
            adv_w = cfg.adv_weight * ramp(cfg.adv_warmup, epoch + i / steps, progress)
            image = image.to(device, non_blocking=True, memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            unlabeled = None
            gan_now = disc_t is not None and (epoch * steps + i) % cfg.d_every == 0
            if unlabeled_iter is not None and gan_now:
                u_image, u_labels = next(unlabeled_iter)
                unlabeled = (u_image.to(device, non_blocking=True, memory_format=torch.channels_last),
                             u_labels.to(device, non_blocking=True))
            losses = train_step(gen_t, disc_t if gan_now else None, opt_g, opt_d, image, labels, settings, adv_w,
                                precision.autocast, scalers, unlabeled, semi)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
            if (i + 1) % 10 == 0 or i + 1 == steps:  # host sync only when reporting
                means = {k: float(v) / counts[k] for k, v in sums.items()}
                safety.check_losses(means, epoch + 1, i + 1, run_dir, guard.saved_epoch)  # NaN sticks in the sums
                cb.on_step(i + 1, means)
        if not sums:  # the budget ran out before this epoch trained at all
            break
        safety.check_model(gen, disc, epoch + 1, run_dir, guard.saved_epoch)
        sums = ctx.mean_values(sums)
        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update({k: float(sums[k]) / counts[k] if k in sums else float("nan") for k in LOSS_KEYS})
        row["train_seconds"] = round(time.monotonic() - t_epoch, 3)
        final = bool(stopped) or clock.must_stop() or epoch + 1 == cfg.epochs
        # Under --time, validation may cost at most ~10% of the budget: short epochs skip it.
        since_val += time.monotonic() - t_epoch
        validate_now = budget is None or final or since_val >= 9 * clock.val_cost
        row.update(lr_g=opt_g.param_groups[0]["lr"], lr_d=opt_d.param_groups[0]["lr"] if opt_d else float("nan"))
        if validate_now:
            t_val = time.monotonic()
            ctx.average_buffers(gen)
            metrics, _ = validate(gen, val_dl, info, device, precision, reduce=ctx.sum_array)
            clock.val_cost, since_val = ctx.agree(time.monotonic() - t_val), 0.0
            row.update(val_mIoU=metrics["mIoU"], val_Dice=metrics["mDice"])
        else:
            row.update(val_mIoU=float("nan"), val_Dice=float("nan"))
        row["seconds"] = round(time.monotonic() - t_epoch, 3)
        if unlabeled_set is not None:
            row["semi_pixels"] = unlabeled_set.share  # the pseudo-labels this epoch trained on
        history.append(row)
        if validate_now:
            fit = metrics["mIoU"] if np.isfinite(metrics["mIoU"]) else -1.0
            improved = fit > best_fit
            if improved:
                best_fit, best_epoch, bad_epochs = fit, epoch + 1, 0
            else:
                bad_epochs += 1
            if unlabeled_set is not None and disc is not None:  # self-training: start, or refresh the labels
                if unlabeled_set.after_validation(epoch + 1, max((epoch + 1) / cfg.epochs, clock.progress()), fit,
                                                  improved, gen, disc, weights / "best.pt"):
                    bad_epochs = 0  # --patience counts again from when the unlabeled images join
            state = {
                "model": to_dict(mcfg), "data_info": to_dict(info), "train": to_dict(cfg),
                "generator": gen.state_dict(), "discriminator": disc.state_dict() if disc is not None else None,
                "epoch": epoch + 1, "best_fitness": best_fit, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                "history": history, "metrics": {"mIoU": metrics["mIoU"], "mDice": metrics["mDice"]},
                "elapsed": clock.elapsed(), "run_dir": str(run_dir), "data_summary": data_summary,
            }
        if validate_now and ctx.main:
            with guard.saving():  # Ctrl-C waits until this epoch's files are all written
                if improved:
                    checkpoint.save(weights / "best.pt", state)
                state.update(opt_g=opt_g.state_dict(), opt_d=opt_d.state_dict() if opt_d else None)
                checkpoint.save(weights / "last.pt", state)
                checkpoint.atomic_write_bytes(run_dir / "metrics.csv", _csv_text(history).encode())
                guard.saved_epoch = epoch + 1
        cb.on_epoch_end(row)
        if stopped:
            break
        if cfg.patience and bad_epochs >= cfg.patience and (unlabeled_set is None or unlabeled_set.started):
            stopped = f"early stop: no improvement in {cfg.patience} epochs"
            break
        if clock.must_stop():
            stopped = f"time budget {cfg.time} reached"
            break
    epochs_run = int(history[-1]["epoch"]) if history else start_epoch
    if ctx.main:
        if not (weights / "last.pt").is_file():
            raise UserError(f"--time {cfg.time}: too short to train and validate once; give a longer budget")
        last = checkpoint.load(weights / "last.pt")
        last["finished"] = True
        checkpoint.save(weights / "last.pt", {k: v for k, v in last.items() if k not in ("format", "segcli_version")})
        _finish_plots(run_dir, history, weights, val_dl, info, device, precision, prep)
    best = next((r for r in history if r["epoch"] == best_epoch), {})
    return TrainResult(run_dir, epochs_run, best_epoch, best, history, stopped,
                       unlabeled_set.summary() if unlabeled_set is not None else "")


def _finish_plots(run_dir: Path, history: list, weights: Path, val_dl: DataLoader, info: DataInfo,
                  device: torch.device, precision: Precision, prep: Prepared) -> None:
    from segcli.plots import plot_curves, save_samples

    plot_curves(history, run_dir / "plots" / "curves.png")
    best_path = weights / "best.pt"
    if not best_path.is_file():
        return
    gen, _, _ = checkpoint.model_from_checkpoint(checkpoint.load(best_path))
    gen.to(device)
    _, kept = validate(gen, val_dl, info, device, precision, keep=4, limit=True)
    ds: SegDataset = val_dl.dataset
    order = [i for batch in val_dl.batch_sampler for i in batch]
    samples = []
    for (j, truth, pred), idx in zip(kept, order):
        samples.append((ds.load(idx)[0], truth, pred))
    save_samples(samples, info.binary, run_dir / "plots" / "val_samples.png")
