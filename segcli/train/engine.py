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
from segcli.train.gan import generator_step
from segcli.train.parts import Step
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
    """Train G (and the parts beside it: D, the quality judge, ...) on cfg.data; write the run folder; return the outcome.

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
        row.update(lr_g=run.opt_g.param_groups[0]["lr"], lr_d=float("nan"))
        for part in run.parts:
            row.update(part.epoch_columns())
        run.since_val += time.monotonic() - t_epoch
        final = bool(stopped) or clock.must_stop() or epoch + 1 == cfg.epochs
        metrics = validate_run(run) if final or clock.validation_due(run.since_val) else None  # short epochs skip it
        row.update(_validation_columns(metrics))
        row["seconds"] = round(time.monotonic() - t_epoch, 3)
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


def _validation_columns(metrics: Optional[dict[str, Any]]) -> dict[str, Any]:
    if metrics is None:  # an epoch without validation (short epochs under --time)
        return {"val_mIoU": float("nan"), "val_Dice": float("nan")}
    return {"val_mIoU": metrics["mIoU"], "val_Dice": metrics["mDice"], **({"ema": metrics["ema"]} if "ema" in metrics else {})}


def epoch_loader(run: Run, epoch: int) -> DataLoader:
    """The epoch's batches: half resolution while the run is within its --progressive fraction."""
    if run.low_dl is not None and max(epoch / run.cfg.epochs, run.clock.progress()) < run.cfg.progressive:
        return run.low_dl
    return run.train_dl


def train_one_epoch(run: Run, epoch: int, cb: Callbacks) -> EpochResult:
    """One pass over the training loader (or as much of it as the --time budget allows)."""
    cfg, clock, loader = run.cfg, run.clock, epoch_loader(run, epoch)
    steps = len(loader)
    seed_everything(cfg.seed + epoch)  # reseeded per epoch: a resumed run replays what the uninterrupted one would
    loader.sampler.set_epoch(epoch)
    cb.on_epoch_start(epoch + 1, cfg.epochs, steps)
    run.guard.epoch = epoch + 1
    run.gen.train()
    for part in run.parts:
        part.start_epoch(epoch)
    sums: dict[str, Any] = {}
    counts: dict[str, int] = {}  # with --d-every, the D losses exist on some steps only
    stopped = ""
    for i, (image, labels) in enumerate(loader):
        if clock.must_stop():
            stopped = f"time budget {cfg.time} reached"
            break
        progress = max((epoch + i / steps) / cfg.epochs, clock.progress())
        losses = train_step(run, epoch, epoch * steps + i, image, labels, progress, epoch + i / steps)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v
            counts[k] = counts.get(k, 0) + 1
        if (i + 1) % 10 == 0 or i + 1 == steps:  # host sync only when reporting
            means = {k: float(v) / counts[k] for k, v in sums.items()}
            safety.check_losses(means, epoch + 1, i + 1, run.run_dir, run.guard.saved_epoch)  # NaN sticks in the sums
            cb.on_step(i + 1, means)
    if not sums:
        return EpochResult(None, counts, stopped)
    modules = {"generator": run.gen, **{k: m for part in run.parts for k, m in part.modules().items()}}
    safety.check_model(modules, epoch + 1, run.run_dir, run.guard.saved_epoch)
    sums = run.ctx.mean_values(sums)
    return EpochResult({k: float(sums[k]) / counts[k] if k in sums else float("nan") for k in LOSS_KEYS}, counts, stopped)


def train_step(run: Run, epoch: int, index: int, image: torch.Tensor, labels: torch.Tensor, progress: float,
               epochs_done: float) -> dict[str, torch.Tensor]:
    """G's forward pass; each part's own update on the detached prediction (D's step first); G's
    step on its segmentation loss plus the parts' terms (through a frozen D); the parts follow G."""
    cfg = run.cfg
    set_lr(run.opt_g, lr_at(cfg.lr_g, progress))
    for part in run.parts:
        part.set_progress(progress)
    image = image.to(run.device, non_blocking=True, memory_format=torch.channels_last)
    labels = labels.to(run.device, non_blocking=True)
    with run.precision.autocast():
        logits = run.gen_t(image)
    # an untrained G is uncertain everywhere; a full-strength D would push it to the majority classes
    adv_w = cfg.adv_weight * ramp(cfg.adv_warmup, epochs_done, progress)
    step = Step(index, epoch, image, labels, logits, adv_w, index % cfg.d_every == 0)
    losses: dict[str, torch.Tensor] = {}
    for part in run.parts:
        losses.update(part.update(step))
    terms = []
    for part in run.parts:
        term, logged = part.generator_term(step, run.gen_t)
        losses.update(logged)
        if term is not None:
            terms.append(term)
    losses.update(generator_step(run.opt_g, logits, labels, run.settings, terms, run.scaler))
    for part in run.parts:
        part.after_step(run.gen)
    return losses


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
    """Update the best-so-far, then tell the parts (the unlabeled images may join); True if this epoch is the best."""
    fit = metrics["mIoU"] if np.isfinite(metrics["mIoU"]) else -1.0
    improved = run.tracker.update(epoch, fit)
    for part in run.parts:
        if part.after_validation(run, epoch, fit, improved):
            run.tracker.bad_epochs = 0  # --patience counts again (the unlabeled images have joined)
    return improved


def save_epoch(run: Run, epoch: int, metrics: dict[str, Any], improved: bool, finished: bool = False) -> None:
    """best.pt (when improved), last.pt with the optimizer states, metrics.csv: all or none of them."""
    if improved:
        run.best_samples = run.samples
    t_save = time.monotonic()
    if run.ctx.main:
        with run.guard.saving():  # Ctrl-C waits until this epoch's files are all written
            if improved:
                run.checkpoint(epoch, metrics).save(run.weights / "best.pt")
            run.last = run.checkpoint(epoch, metrics, last=True).replace(finished=finished)
            run.last.save(run.weights / "last.pt")
            atomic_write_bytes(run.run_dir / "metrics.csv", csv_text(run.history).encode())
            run.guard.saved_epoch = epoch
    run.clock.save_cost = run.ctx.agree(time.monotonic() - t_save)  # rank 0's: it did the writing


def finish(run: Run, stopped: str) -> TrainResult:
    """Mark last.pt finished, draw the plots, and say how the run went."""
    epochs_run = int(run.history[-1]["epoch"]) if run.history else run.start_epoch
    if run.ctx.main:
        last_path = run.weights / "last.pt"
        if not last_path.is_file():
            raise UserError(f"--time {run.cfg.time}: too short to train and validate once; give a longer budget")
        if run.last is None or not run.last.finished:  # the run ended without a validation that knew it
            run.last = (run.last or Checkpoint.load(last_path)).replace(finished=True)
            run.last.save(last_path)
    for part in run.parts:  # on every process: the judge's statistics are averaged, rank 0 calibrates
        part.finish(run)
    if run.ctx.main:
        _finish_plots(run)
    best = next((r for r in run.history if r["epoch"] == run.tracker.best_epoch), {})
    return TrainResult(run.run_dir, epochs_run, run.tracker.best_epoch, best, run.history, stopped,
                       " ".join(filter(None, (part.summary() for part in run.parts))))


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
                 "img_size": run.cfg.img_size, "start_epoch": run.start_epoch, "init": run.data_summary.get("init"),
                 "config": {"train": to_dict(run.cfg), "model": to_dict(run.mcfg), "data_info": to_dict(run.info)}})


def _stop_reason(run: Run) -> str:
    if run.tracker.exhausted and all(part.ready_to_stop() for part in run.parts):
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
