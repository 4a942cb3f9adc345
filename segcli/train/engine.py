"""The training loop, as torchvision's reference script reads: set-up, then per epoch
`train_one_epoch`, `validate`, `save_epoch`; a best/early-stop tracker decides when to stop.

One function a command calls (`train`), events out through callbacks, nothing printed.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from segcli.checkpoint import Checkpoint
from segcli.config import ModelConfig, TrainConfig, to_dict
from segcli.data.dataset import SegDataset
from segcli.device import Precision, describe
from segcli.errors import UserError
from segcli.fileio import atomic_write_bytes, make_dirs, save_yaml
from segcli.metrics import ConfusionMatrix
from segcli.models import OutputSpec
from segcli.train import distributed, safety
from segcli.train.callbacks import Callbacks
from segcli.train.consistency import ConsistencySet, consistency_term
from segcli.train.estimator import LR as ESTIMATOR_LR, store_calibration
from segcli.train.gan import UnlabeledTerm, train_step
from segcli.train.schedule import lr_at, ramp, set_lr
from segcli.train.state import Run, seed_everything, setup

SAMPLES = 4  # validation images in plots/val_samples.png
CSV_FIELDS = ["epoch", "g_loss", "g_seg", "g_adv", "d_loss", "val_mIoU", "val_Dice", "lr_g", "lr_d", "seconds",
              "train_seconds", "semi_pixels", "ema", "e_loss"]
LOSS_KEYS = ("g_loss", "g_seg", "g_adv", "d_loss", "e_loss")


@dataclass
class EpochResult:
    losses: Optional[dict[str, float]]  # mean of each loss over the steps that had it; None: no step ran
    steps: dict[str, int] = field(default_factory=dict)  # steps that had each loss (D's: every --d-every-th)
    stopped: str = ""  # why the epoch ended early (the --time budget), if it did


@dataclass
class TrainResult:
    run_dir: Path
    epochs_run: int
    best_epoch: int
    best: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = ""
    unlabeled: str = ""  # what became of --unlabeled


def train(cfg: TrainConfig, mcfg: ModelConfig, callbacks: Optional[Callbacks] = None,
          resume: Optional[Checkpoint] = None, started: Optional[float] = None) -> TrainResult:
    """Train G (and D unless --gan none) on cfg.data; write the run folder; return the outcome.

    Under torchrun every process calls this; they train one model with DDP (segcli.train.distributed).
    Ctrl-C raises errors.Interrupted naming the run and how to resume it. `started` (monotonic
    seconds): when the command began, so that a --time budget includes its start-up.
    """
    with distributed.session(cfg.device) as ctx, safety.interrupt_guard() as guard:
        run = setup(ctx, cfg, mcfg, resume, guard, started)
        return fit(run, (callbacks if ctx.main else None) or Callbacks())  # one process reports


def fit(run: Run, cb: Callbacks) -> TrainResult:
    """The epoch loop: train, validate when due, save, stop on the budget, patience or the last epoch."""
    cfg, clock = run.cfg, run.clock
    _start(run, cb)
    if run.compiled is not None:
        run.compiled.listen(cb.on_note)  # a failed compilation: one note, then eager
    stopped = ""
    for epoch in range(run.start_epoch, cfg.epochs):
        t_epoch = time.monotonic()
        result = train_one_epoch(run, epoch, cb)
        stopped = result.stopped
        if result.losses is None:  # the budget ran out before this epoch trained at all
            break
        row = {"epoch": epoch + 1, **result.losses, "train_seconds": round(time.monotonic() - t_epoch, 3)}
        row.update(lr_g=run.opt_g.param_groups[0]["lr"], lr_d=run.opt_d.param_groups[0]["lr"] if run.opt_d else float("nan"))
        run.since_val += time.monotonic() - t_epoch
        final = bool(stopped) or clock.must_stop() or epoch + 1 == cfg.epochs
        # under --time validation may cost at most ~10% of the budget: short epochs skip it
        metrics = validate_run(run) if clock.budget is None or final or run.since_val >= 9 * clock.val_cost else None
        row.update(_validation_columns(metrics))
        row["seconds"] = round(time.monotonic() - t_epoch, 3)
        if run.unlabeled is not None:
            row["semi_pixels"] = run.unlabeled.pixel_share()  # the pseudo-labels this epoch trained on
        run.history.append(row)
        if metrics is not None:
            cb.on_validation(epoch + 1, _samples(run, run.samples))
            improved = after_validation(run, epoch + 1, metrics)
            stopped = stopped or _stop_reason(run)
            save_epoch(run, epoch + 1, metrics, improved, finished=final or bool(stopped))
        cb.on_epoch_end(row)
        stopped = stopped or _stop_reason(run)
        if stopped:
            break
    result = finish(run, stopped)
    cb.on_finish(result)
    return result


def _unlabeled_term(run: Run, batch: tuple[torch.Tensor, torch.Tensor]) -> UnlabeledTerm:
    """The semi-supervised loss of one unlabeled batch, for the G step to compute."""
    image = batch[0].to(run.device, non_blocking=True, memory_format=torch.channels_last)
    # the bare modules under DDP: their gradients still reach the same all-reduce hooks
    gen = getattr(run.gen_t, "module", run.gen_t)
    disc = getattr(run.disc_t, "module", run.disc_t)
    if isinstance(run.unlabeled, ConsistencySet):
        teacher = run.ema.module if run.ema is not None else gen
        gate = disc if run.unlabeled.settings.gate == "discriminator" else None
        return consistency_term(gen, teacher, image, run.unlabeled.settings, run.precision.autocast, gate, run.cfg.gan)
    pseudo = batch[1].to(run.device, non_blocking=True)
    return run.unlabeled.term(gen, run.disc, image, pseudo, run.cfg.gan, run.precision.autocast)


def _validation_columns(metrics: Optional[dict[str, Any]]) -> dict[str, Any]:
    if metrics is None:  # an epoch without validation (short epochs under --time)
        return {"val_mIoU": float("nan"), "val_Dice": float("nan")}
    return {"val_mIoU": metrics["mIoU"], "val_Dice": metrics["mDice"], **({"ema": metrics["ema"]} if "ema" in metrics else {})}


def train_one_epoch(run: Run, epoch: int, cb: Callbacks) -> EpochResult:
    """One pass over the training loader (or as much of it as the --time budget allows)."""
    cfg, clock, steps = run.cfg, run.clock, len(run.train_dl)
    seed_everything(cfg.seed + epoch)  # reseeded per epoch: a resumed run replays what the uninterrupted one would
    run.train_dl.sampler.set_epoch(epoch)
    cb.on_epoch_start(epoch + 1, cfg.epochs, steps)
    run.guard.epoch = epoch + 1
    run.gen.train()
    if run.disc is not None:
        run.disc.train()
    sums: dict[str, Any] = {}
    counts: dict[str, int] = {}  # with --d-every, the D losses exist on some steps only
    unl = run.unlabeled
    unlabeled_iter = unl.batches(epoch) if unl is not None and unl.started is not None else None
    stopped = ""
    for i, (image, labels) in enumerate(run.train_dl):
        if clock.must_stop():
            stopped = f"time budget {cfg.time} reached"
            break
        progress = max((epoch + i / steps) / cfg.epochs, clock.progress())
        set_lr(run.opt_g, lr_at(cfg.lr_g, progress))
        set_lr(run.opt_d, lr_at(cfg.lr_d, progress))
        est = run.estimator
        if est is not None:
            set_lr(est.opt, lr_at(ESTIMATOR_LR, progress))
        # an untrained G is uncertain everywhere; a full-strength D would push it to the majority classes
        adv_w = cfg.adv_weight * ramp(cfg.adv_warmup, epoch + i / steps, progress)
        image = image.to(run.device, non_blocking=True, memory_format=torch.channels_last)
        labels = labels.to(run.device, non_blocking=True)
        d_step = (epoch * steps + i) % cfg.d_every == 0
        gan_now = run.disc_t is not None and d_step
        term = None
        if unlabeled_iter is not None and unl.wants_batch(epoch * steps + i, gan_now):
            term = _unlabeled_term(run, next(unlabeled_iter))
        losses = train_step(run.gen_t, run.disc_t if gan_now else None, run.opt_g, run.opt_d, image, labels,
                            run.settings, adv_w, run.precision.autocast, run.scalers, term,
                            est.step if est is not None and d_step else None)
        if unl is not None:
            unl.record(losses)
        if run.ema is not None:
            run.ema.update(run.gen)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v
            counts[k] = counts.get(k, 0) + 1
        if (i + 1) % 10 == 0 or i + 1 == steps:  # host sync only when reporting
            means = {k: float(v) / counts[k] for k, v in sums.items()}
            safety.check_losses(means, epoch + 1, i + 1, run.run_dir, run.guard.saved_epoch)  # NaN sticks in the sums
            cb.on_step(i + 1, means)
    if not sums:
        return EpochResult(None, counts, stopped)
    safety.check_model(run.gen, run.disc, epoch + 1, run.run_dir, run.guard.saved_epoch)
    sums = run.ctx.mean_values(sums)
    return EpochResult({k: float(sums[k]) / counts[k] if k in sums else float("nan") for k in LOSS_KEYS}, counts, stopped)


@torch.inference_mode()
def validate(gen: torch.nn.Module, loader: DataLoader, num_classes: int, device: torch.device,
             precision: Precision, keep: int = 0, limit: bool = False,
             reduce: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> tuple[dict[str, Any], list]:
    """Full-resolution validation; returns metrics and up to `keep` (image index, truth, pred) samples.

    `limit` stops once `keep` samples are collected (the metrics then cover only those).
    `reduce` sums the confusion matrix over processes that each validated a part of the set.
    """
    output: OutputSpec = gen.output
    was_training = gen.training
    gen.eval()
    cm = ConfusionMatrix(num_classes)
    samples: list = []
    for image, labels in loader:
        image = image.to(device, non_blocking=True)
        with precision.autocast():
            pred = output.labels(gen(image).float())
        cm.update(pred.cpu().numpy(), labels.numpy())
        for i in range(min(keep - len(samples), image.shape[0])):
            samples.append((i, labels[i].numpy().astype(np.uint8), pred[i].cpu().numpy().astype(np.uint8)))
        if limit and len(samples) >= keep:
            break
    gen.train(was_training)
    if reduce is not None:
        cm.mat = reduce(cm.mat)
    return cm.compute(), samples


def validate_run(run: Run) -> dict[str, Any]:
    """Validate the run's generator (all processes' parts together); remembers what it cost, and
    the first few images' masks for the run's plot of validation samples."""
    t_val = time.monotonic()
    candidates = [run.gen] + ([run.ema.module] if run.ema is not None else [])
    scored = []
    for model in candidates:
        run.ctx.average_buffers(model)
        scored.append(validate(model, run.val_dl, run.info.num_classes, run.device, run.precision, keep=SAMPLES,
                               reduce=run.ctx.sum_array))
    fits = [m["mIoU"] if np.isfinite(m["mIoU"]) else -1.0 for m, _ in scored]
    run.use_ema = len(fits) > 1 and fits[1] > fits[0]  # the same on every process: the metrics are summed
    metrics, kept = scored[int(run.use_ema)]
    if run.ema is not None:
        metrics = {**metrics, "ema": int(run.use_ema)}
    run.clock.val_cost, run.since_val = run.ctx.agree(time.monotonic() - t_val), 0.0
    order = [i for batch in run.val_dl.batch_sampler for i in batch]
    run.samples = [(idx, truth, pred) for (_, truth, pred), idx in zip(kept, order)]
    return metrics


def after_validation(run: Run, epoch: int, metrics: dict[str, Any]) -> bool:
    """Update the best-so-far (and the unlabeled images' start and labels); True if this epoch is the best."""
    fit = metrics["mIoU"] if np.isfinite(metrics["mIoU"]) else -1.0
    improved = run.tracker.update(epoch, fit)
    unl = run.unlabeled
    if unl is not None and run.disc is not None:  # self-training: start, or refresh the labels
        progress = max(epoch / run.cfg.epochs, run.clock.progress())
        if unl.after_validation(epoch, progress, fit, improved, run.gen, run.disc, run.weights / "best.pt"):
            run.tracker.bad_epochs = 0  # --patience counts again from when the unlabeled images join
    return improved


def save_epoch(run: Run, epoch: int, metrics: dict[str, Any], improved: bool, finished: bool = False) -> None:
    """best.pt (when improved), last.pt with the optimizer states, metrics.csv: all or none of them."""
    if improved:
        run.best_samples = run.samples
    if not run.ctx.main:
        return
    ckpt = run.checkpoint(epoch, metrics)
    with run.guard.saving():  # Ctrl-C waits until this epoch's files are all written
        if improved:
            ckpt.save(run.weights / "best.pt")
        run.last = ckpt.replace(opt_g=run.opt_g.state_dict(), opt_d=run.opt_d.state_dict() if run.opt_d else None,
                                finished=finished, train_generator=run.gen.state_dict() if run.ema else None,
                                ema_generator=run.ema.module.state_dict() if run.ema else None,
                                ema_updates=run.ema.updates if run.ema else 0,
                                opt_e=run.estimator.opt.state_dict() if run.estimator else None)
        run.last.save(run.weights / "last.pt")
        atomic_write_bytes(run.run_dir / "metrics.csv", csv_text(run.history).encode())
        run.guard.saved_epoch = epoch


def finish(run: Run, stopped: str) -> TrainResult:
    """Mark last.pt finished, draw the plots, and say how the run went."""
    epochs_run = int(run.history[-1]["epoch"]) if run.history else run.start_epoch
    if run.estimator is not None:
        run.ctx.average_buffers(run.estimator.net)  # every process takes part; rank 0 calibrates and saves
    if run.ctx.main:
        last_path = run.weights / "last.pt"
        if not last_path.is_file():
            raise UserError(f"--time {run.cfg.time}: too short to train and validate once; give a longer budget")
        if run.last is None or not run.last.finished:  # the run ended without a validation that knew it
            run.last = (run.last or Checkpoint.load(last_path)).replace(finished=True)
            run.last.save(last_path)
        if run.estimator is not None:
            run.last = store_calibration(run.estimator, run.weights, run.last, run.val_dl.dataset, run.device,
                                         run.precision.autocast, run.cfg.seed, run.guard.saving)
        _finish_plots(run)
    best = next((r for r in run.history if r["epoch"] == run.tracker.best_epoch), {})
    return TrainResult(run.run_dir, epochs_run, run.tracker.best_epoch, best, run.history, stopped,
                       run.unlabeled.summary() if run.unlabeled is not None else "")


def csv_text(history: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for row in history:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def _start(run: Run, cb: Callbacks) -> None:
    """Write the run's config (and make metrics.csv agree with last.pt after a kill), then announce it."""
    if run.ctx.main:
        make_dirs(run.weights)
        save_yaml(run.run_dir / "config.yaml", {"train": to_dict(run.cfg), "model": to_dict(run.mcfg),
                                                "data_info": to_dict(run.info)})
        if run.history:  # a kill between last.pt and metrics.csv: make them agree again before going on
            atomic_write_bytes(run.run_dir / "metrics.csv", csv_text(run.history).encode())
    world = f" x {run.ctx.world} processes" if run.ctx.enabled else ""
    cb.on_start({"run_dir": run.run_dir, "device": describe(run.device) + world, "precision": run.precision.name,
                 "train": run.data_summary["train_images"], "val": run.data_summary["val_images"], "info": run.info,
                 "img_size": run.cfg.img_size, "start_epoch": run.start_epoch,
                 "config": {"train": to_dict(run.cfg), "model": to_dict(run.mcfg), "data_info": to_dict(run.info)}})


def _stop_reason(run: Run) -> str:
    unl = run.unlabeled
    if run.tracker.exhausted and (unl is None or unl.started):
        return f"early stop: no improvement in {run.cfg.patience} epochs"
    if run.clock.must_stop():
        return f"time budget {run.cfg.time} reached"
    return ""


def _finish_plots(run: Run) -> None:
    from segcli.visualize import plot_curves, save_samples

    plot_curves(run.history, run.run_dir / "plots" / "curves.png")
    kept = run.best_samples
    if not kept and (run.weights / "best.pt").is_file():  # resumed after its best epoch: ask best.pt again
        gen = Checkpoint.load(run.weights / "best.pt").build_generator().to(run.device)
        _, masks = validate(gen, run.val_dl, run.info.num_classes, run.device, run.precision, keep=SAMPLES, limit=True)
        order = [i for batch in run.val_dl.batch_sampler for i in batch]
        kept = [(idx, truth, pred) for (_, truth, pred), idx in zip(masks, order)]
    save_samples(_samples(run, kept), run.info.binary, run.run_dir / "plots" / "val_samples.png", run.info.colors,
                 run.info.bands)


def _samples(run: Run, kept: list) -> list:
    """(image, truth, prediction) of validation images kept as (dataset index, truth, prediction)."""
    ds: SegDataset = run.val_dl.dataset
    return [(ds.load(idx)[0], truth, pred) for idx, truth, pred in kept]
