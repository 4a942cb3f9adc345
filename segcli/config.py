"""Typed configuration: what the data is, what the model is, how a run trains.

All three are frozen: the training set-up resolves the user's options and the data into one
set of values once (segcli.train.resolve) and nothing changes them afterwards. Every
checkpoint carries them, so predict/export/serve rebuild the model with no flags.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Optional

GAN_MODES = ("flaw", "lsgan", "vanilla", "hinge", "none")
SEMI_METHODS = ("consistency", "adversarial", "flaw")
PRECISIONS = ("auto", "32", "bf16", "16")
SEG_LOSSES = ("ce", "focal")


@dataclass(frozen=True)
class DataInfo:
    """What the data looks like: everything needed to feed and read a model."""

    num_classes: int = 2
    classes: list[str] = field(default_factory=list)
    in_channels: int = 3
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.25, 0.25, 0.25])
    ignore_index: Optional[int] = None
    # Binary data keeps masks as {0, 255} on disk; the model has one output channel.
    binary: bool = True
    # RGB per class from classes.txt (`name R G B`); [] = segcli's default palette.
    colors: list[list[int]] = field(default_factory=list)
    # Bands shown in overlays and plots (1-based; one = gray, three = red, green, blue), from
    # --bands; [] = the image's own gray / RGB, or bands 1-3 of a multi-band image.
    bands: list[int] = field(default_factory=list)

    @property
    def out_channels(self) -> int:
        return 1 if self.binary else self.num_classes

    def class_names(self) -> list[str]:
        if self.classes:
            return list(self.classes)
        if self.binary:
            return ["background", "foreground"]
        return [f"class_{i}" for i in range(self.num_classes)]


@dataclass(frozen=True)
class ModelConfig:
    """The architecture: enough to rebuild the generator and discriminator with no flags."""

    encoder: str = "auto"  # resnet18, or unet when base_channels/depth are changed (recorded resolved)
    base_channels: int = 32
    depth: int = 4
    # widths of the decoder blocks, deepest first; [] = the encoder's own (ResNets: 256 128 64 32 16, as smp);
    # with encoder auto and binary masks: 128 64 32 16 16 (train.resolve)
    decoder_channels: list[int] = field(default_factory=list)
    discriminator: str = "patch"
    disc_channels: int = 32


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains. Saved as the run's config.yaml and inside every checkpoint.

    Fields documented as automatic (None, 0 or -1) are filled by segcli.train.resolve;
    a saved config holds the resolved values.
    """

    data: str = ""
    epochs: Optional[int] = None  # None: 50, or 1000 (a cap for the schedule) with --time
    time: Optional[str] = None
    batch_size: int = 0  # 0: from the patch size
    img_size: int = 0  # 0: from the data
    val_split: float = 0.2
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    patience: int = 0
    # flaw: D predicts where G's mask is wrong and G learns to lower that prediction (D is also the
    # quality estimator); lsgan | vanilla | hinge: the seed's real/fake D; none: a plain U-Net
    gan: str = "flaw"
    adv_weight: Optional[float] = None  # None: flaw 0.1, real/fake 0.01 (train.resolve)
    adv_warmup: int = -1  # epochs over which the adversarial weight ramps up; -1: the first quarter of the run
    d_every: int = 0  # the GAN part (D step + G's term from D) runs on every N-th step; 0: flaw 4, real/fake 2
    lr_g: float = 0.0  # 0: from the data: 2e-3 for binary masks, 1e-3 otherwise (train.resolve)
    lr_d: float = 0.0  # 0: flaw 2e-3 (AdamW), real/fake 2e-4 (Adam, betas 0.5, 0.999)
    label_smoothing: float = 0.1
    onehot_tau: float = 0.9
    weight_decay: float = 1e-4
    ema: float = 0.0  # decay of the generator weights' moving average (the model validated and saved); 0: off
    ignore_index: Optional[int] = None
    # Class imbalance: "auto" (smoothed inverse frequency of the train masks), explicit weights, or None.
    class_weights: Optional[Any] = None
    loss: str = "ce"  # ce | focal (CE/BCE down-weighting easy pixels by (1 - p)^gamma); + Dice either way
    focal_gamma: float = 2.0
    unlabeled: Optional[str] = None
    semi: str = "consistency"  # how the unlabeled images teach: consistency | adversarial | flaw
    # None: the method's own (consistency: teacher confidence 0.9, weight 1; adversarial: D confidence 0.2, weight 0.1)
    semi_threshold: Optional[float] = None
    semi_weight: Optional[float] = None
    semi_every: int = 2  # consistency: an unlabeled batch (half the labelled one) on every N-th step
    semi_gate: str = "none"  # consistency: "discriminator" also requires D to accept the teacher's mask
    semi_adv_weight: Optional[float] = None  # None: adversarial 0.001; flaw: the flaw term's weight on unlabeled crops, 0.1
    # adversarial: epochs before the unlabeled images join; -1: once validation stops improving (train.semi.StartRule)
    semi_start: float = -1.0
    pretrained: bool = False
    weights: Optional[str] = None
    init: Optional[str] = None  # start from this checkpoint's weights (a new run: fresh optimizer and schedule)
    workers: int = -1  # -1: auto (0 on the CPU, where loading shares the cores; up to 4 beside a GPU)
    sync_bn: bool = False  # under torchrun: BatchNorm statistics over the global batch
    cache: bool = True
    # the first fraction of the run trains on images at half resolution: crops of half the patch size,
    # four times the batch, so a step costs what a full-resolution one does and sees four times the
    # scene; 0: off
    progressive: float = 0.0
    augment: bool = False  # crops + flips: better within budgets of ~25-100 epochs (docs/benchmarks.md)
    # keep a label-free quality estimator in the model (predict --quality): under flaw, D itself; under the
    # other modes a judge trained beside D (or beside a plain U-Net)
    quality: bool = True
    orientation_free: Optional[bool] = None  # None: from the data (gray images have no 'up')
    bands: Optional[str] = None  # --bands 3,2,1: the bands overlays and plots show (stored in DataInfo.bands)
    compile: str = "auto"  # torch.compile of the step: auto | on | off (segcli.train.compile)
    logger: str = "auto"  # auto (tensorboard when installed) | tensorboard | mlflow | none (segcli.train.loggers)
    project: str = "runs/train"
    name: str = "exp"
    exist_ok: bool = False


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build a dataclass from a dict, ignoring keys it does not know (older or newer files)."""
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})


def field_names(*classes: type) -> set[str]:
    return {f.name for c in classes for f in fields(c)}
