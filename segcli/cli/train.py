"""`segcli train`: parse options, build the configs, call the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from segcli.cli.app import STARTED, app
from segcli.cli.common import apply_quiet, config_option, merge_config, quiet_option, warn_unknown
from segcli.config import ModelConfig, TrainConfig, field_names

_T = TrainConfig()
_M = ModelConfig()


@app.command()
def train(
    ctx: typer.Context,
    data: Optional[str] = typer.Argument(None, help="Dataset folder (images/+masks/, train/+val/, or a COCO, VOC or Cityscapes folder). With --resume: a checkpoint or run folder.", show_default=False),
    epochs: Optional[int] = typer.Option(None, help="Maximum number of epochs (default 50; with --time, as many as the budget allows).", show_default=False),
    time: Optional[str] = typer.Option(None, help="Wall-clock budget (90s, 6m, 2h); the LR schedule fits it."),
    batch_size: int = typer.Option(_T.batch_size, "--batch-size", "-b", help="Images per step (0 = from the patch size; under torchrun: the global batch, split over the processes)."),
    img_size: int = typer.Option(_T.img_size, help="Training patch size in pixels (0 = from the data)."),
    val_split: float = typer.Option(_T.val_split, help="Validation share of a flat images/+masks/ dataset."),
    device: str = typer.Option(_T.device, help="auto | cpu | cuda | cuda:N | mps"),
    precision: str = typer.Option(_T.precision, help="auto | 32 | bf16 | 16"),
    seed: int = typer.Option(_T.seed, help="Random seed; a CPU run is repeatable."),
    patience: int = typer.Option(_T.patience, help="Stop after this many epochs without a better val mIoU (0 = off)."),
    gan: str = typer.Option(_T.gan, help="What the discriminator D learns and teaches. flaw: D predicts where G's mask is wrong, G learns to lower that error, and after training D is the quality estimate (one judge) | lsgan | vanilla | hinge: the seed's real/fake D (a truth-vs-prediction loss), with the quality estimate from a judge trained beside it | none: no D and no term for G (a plain U-Net; the judge trains only for --quality)."),
    adv_weight: Optional[float] = typer.Option(None, help="Weight of D's term in G's loss (default: flaw 0.1, real/fake 0.01).", show_default=False),
    adv_warmup: int = typer.Option(_T.adv_warmup, help="Epochs over which the adversarial weight ramps up (-1: the first quarter of the run; 0: none)."),
    d_every: int = typer.Option(_T.d_every, help="Run the D step and D's term in G's loss on every N-th step only (0: flaw 4, real/fake 2)."),
    discriminator: str = typer.Option(_M.discriminator, help="patch | global | pixel"),
    disc_channels: int = typer.Option(_M.disc_channels, help="Discriminator width of its first layer."),
    encoder: str = typer.Option(_M.encoder, help="Generator encoder: auto (resnet18; unet when --base-channels/--depth are given) | unet | resnet18 | resnet34 | resnet50."),
    pretrained: bool = typer.Option(_T.pretrained, "--pretrained", help="ImageNet weights for a ResNet encoder (torchvision download/cache)."),
    weights: Optional[str] = typer.Option(None, help="Local state-dict file of ImageNet weights for a ResNet encoder (offline)."),
    init: Optional[str] = typer.Option(None, "--init", help="Start from a trained model's weights (a .pt or a run folder: its best.pt) as a new run: fresh optimizer, schedule and budget, the checkpoint's architecture. For training again after more images were labelled; --resume continues an unfinished run instead.", show_default=False),
    base_channels: int = typer.Option(_M.base_channels, help="U-Net width at full resolution."),
    depth: int = typer.Option(_M.depth, help="U-Net depth (number of downsamplings)."),
    decoder_channels: Optional[str] = typer.Option(None, help="Decoder block widths, deepest first, e.g. 128,64,32,16,16 (default: the encoder's own; with the automatic encoder and binary masks 128,64,32,16,16)."),
    lr_g: float = typer.Option(_T.lr_g, "--lr", "--lr-g", help="Generator learning rate (0: 2e-3 for binary masks, 1e-3 otherwise)."),
    lr_d: float = typer.Option(_T.lr_d, help="Discriminator learning rate (0: flaw 2e-3, real/fake 2e-4)."),
    ema: float = typer.Option(_T.ema, help="Decay of the moving average of the generator's weights, which is what is validated and saved (0: off)."),
    ignore_index: Optional[int] = typer.Option(None, help="Mask value that counts in neither loss nor metrics (default 255 for multi-class data)."),
    class_weights: Optional[str] = typer.Option(None, help="Class imbalance: auto (smoothed inverse frequency of the train masks) or one weight per class, e.g. 1,4,2."),
    loss: str = typer.Option(_T.loss, help="Segmentation loss besides Dice: ce (CE/BCE) | focal."),
    focal_gamma: float = typer.Option(_T.focal_gamma, help="Focusing parameter of --loss focal."),
    unlabeled: Optional[str] = typer.Option(None, help="Folder of images without masks (semi-supervised training, --semi)."),
    semi: str = typer.Option(_T.semi, help="How unlabeled images teach: consistency (weak-to-strong, a teacher's confident pseudo-labels) | flaw (consistency + the flaw D's correction of G's prediction; --gan flaw) | adversarial (Hung et al. 2018; a real/fake --gan)."),
    semi_threshold: Optional[float] = typer.Option(None, help="Confidence that makes an unlabeled pixel a pseudo-label (consistency: the teacher's, default 0.9; adversarial: D's, default 0.2).", show_default=False),
    semi_weight: Optional[float] = typer.Option(None, help="Weight of the unlabeled loss (default: consistency 1, adversarial 0.1).", show_default=False),
    semi_every: int = typer.Option(_T.semi_every, help="Consistency: an unlabeled batch (half the labelled one) on every N-th step."),
    semi_gate: str = typer.Option(_T.semi_gate, help="Consistency: none | discriminator (D must also accept the teacher's mask: a real/fake D finds it real, the flaw D expects it right)."),
    semi_adv_weight: Optional[float] = typer.Option(None, help="Weight of D's term on unlabeled images (adversarial: default 0.001; flaw: the --adv-weight default, 0.1).", show_default=False),
    semi_start: float = typer.Option(_T.semi_start, help="Adversarial: epochs before the unlabeled images join (-1: once validation stops improving)."),
    workers: int = typer.Option(_T.workers, help="Data-loading worker processes (-1: auto, 0 on CPU, up to 4 with a GPU)."),
    sync_bn: bool = typer.Option(_T.sync_bn, "--sync-bn", help="Under torchrun: BatchNorm statistics over the global batch."),
    cache: bool = typer.Option(_T.cache, help="Keep decoded images in memory when they fit."),
    progressive: float = typer.Option(_T.progressive, help="Train the first fraction of the run (0.5: half) on images at half resolution, four times the batch at the same step cost (0: off)."),
    augment: bool = typer.Option(_T.augment, help="Add scale, rotation and colour augmentation to the random crops and flips (pays only in long runs: at 25-100 epochs it cost 0.01-0.04 mIoU)."),
    quality: bool = typer.Option(_T.quality, "--quality/--no-quality", help="Keep a label-free quality estimator in the model (predict --quality: estimated mIoU and error maps). Under --gan flaw it is D itself (--no-quality: D still teaches G but is not kept); otherwise a judge trained beside G that never changes G's training (--no-quality: not trained)."),
    bands: Optional[str] = typer.Option(None, "--bands", help="Bands shown in overlays and plots, from 1: one (gray) or three (R,G,B), e.g. 3,2,1; predict uses them too (default: the image's own, or bands 1-3)."),
    compile: str = typer.Option(_T.compile, "--compile", help="torch.compile (Inductor) of the training step: auto | on | off. auto compiles on a GPU when the run has no --time or one of at least 10 minutes, never on the CPU, where compiling did not pay back (docs/benchmarks.md); a failed compilation trains eagerly with one note. Cache: ~/.cache/segcli/inductor."),
    logger: str = typer.Option(_T.logger, "--logger", help="Experiment tracking: auto (tensorboard when installed) | tensorboard | mlflow | none."),
    project: str = typer.Option(_T.project, help="Parent folder of run folders."),
    name: str = typer.Option(_T.name, help="Run name (exp, exp2, ... unless --exist-ok)."),
    exist_ok: bool = typer.Option(_T.exist_ok, "--exist-ok", help="Reuse runs/train/NAME instead of a new folder."),
    resume: bool = typer.Option(False, "--resume", help="Continue a run from its last.pt (DATA = checkpoint or run folder; default: the latest run)."),
    quiet: bool = quiet_option(),
    config: Optional[str] = config_option(),
) -> None:
    """Train a GAN segmentation model; writes runs/train/NAME with weights, metrics.csv and plots."""
    from segcli.console import info, out
    from segcli.errors import UserError
    from segcli.ranks import is_main_process
    from segcli.train.resolve import resume_state

    apply_quiet(quiet)
    params, rest = merge_config(ctx, dict(ctx.params), config)
    params.pop("quiet", None)
    if params["resume"] and params.get("init"):
        raise UserError("--resume continues a run, --init starts a new one from a checkpoint's weights; pass one of them")
    if params.pop("resume"):
        cfg, mcfg, state = resume_state(params["data"], params["project"])
        if state is None:
            if not is_main_process():
                return
            info(f"{cfg.name}: already finished ({cfg.epochs} epochs); nothing to resume")
            out().print(str(Path(cfg.project) / cfg.name))
            return
    else:
        (cfg, mcfg), state = _configs(params, rest, config), None
    result = _run(cfg, mcfg, state)
    if is_main_process():  # under torchrun the other ranks stay quiet
        _report(result)


def _run(cfg: TrainConfig, mcfg: ModelConfig, state: Optional[object]):
    """Train with the progress display and the --logger callbacks; loggers hear how a failed run ended."""
    from segcli.console import TrainProgress
    from segcli.train.callbacks import CallbackList
    from segcli.train.engine import train as run_train
    from segcli.train.loggers import build_loggers

    loggers = build_loggers(cfg.logger)  # a missing package fails here, before any work
    progress = TrainProgress()
    error: Optional[BaseException] = None
    try:
        return run_train(cfg, mcfg, CallbackList([progress, *loggers]), resume=state, started=STARTED)
    except BaseException as e:
        error = e
        raise
    finally:
        progress.close()
        for lg in loggers:
            lg.close(error)


def _configs(params: dict, rest: dict, config: Optional[str]) -> tuple[TrainConfig, ModelConfig]:
    """The user's options as configs (resolved against the data later, once, by the engine)."""
    from segcli.errors import UserError

    if not params.get("data"):
        raise UserError("missing DATA: pass a dataset folder, e.g. `segcli train data/ --epochs 50`")
    fields_t, fields_m = field_names(TrainConfig), field_names(ModelConfig)
    values = {**{k: v for k, v in rest.items() if k in fields_t | fields_m}, **params}
    warn_unknown(config, [k for k in rest if k not in fields_t | fields_m | {"data_info"}])
    cfg = TrainConfig(**{k: v for k, v in values.items() if k in fields_t})
    values["decoder_channels"] = _int_list("--decoder-channels", values.get("decoder_channels"))
    mcfg = ModelConfig(**{k: v for k, v in values.items() if k in fields_m})
    return cfg, mcfg


def _report(result) -> None:
    from segcli.console import err, fmt, out, summary_table

    best = result.best
    rows = [
        ("epochs", str(result.epochs_run)),
        ("best epoch", str(result.best_epoch)),
        ("val mIoU", fmt(best.get("val_mIoU"))),
        ("val Dice", fmt(best.get("val_Dice"))),
        ("weights", str(result.run_dir / "weights" / "best.pt")),
    ]
    if result.stopped:
        rows.append(("stopped", result.stopped))
    if result.unlabeled:
        rows.append(("unlabeled", result.unlabeled))
    from segcli import console

    if not console.QUIET:
        err().print(summary_table("training finished", rows))
    out().print(str(result.run_dir))


def _int_list(option: str, text: object) -> list[int]:
    """'128,64,32' (or a list from a config file) -> [128, 64, 32]; None -> []."""
    from segcli.errors import UserError

    if text in (None, "", []):
        return []
    parts = text if isinstance(text, list) else str(text).replace(" ", "").split(",")
    try:
        values = [int(p) for p in parts]
    except (TypeError, ValueError):
        values = []
    if not values or min(values) < 1:
        raise UserError(f"{option} {text}: positive whole numbers separated by commas, e.g. 128,64,32,16,16")
    return values
