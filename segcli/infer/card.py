"""The export card: everything an exported model carries about itself, as one typed structure.

A `.pt` checkpoint and the `.onnx` / TorchScript files exported from it describe the same model, so
both are read into a `ModelCard`: `ModelCard.from_checkpoint` for a checkpoint, `ModelCard.from_json`
for the `segcli` metadata entry of an exported file (written by `ModelCard.to_json`, here and nowhere
else). The Predictor (tiling by the training patch, threshold, normalisation, output decoding, the
quality estimator's calibration) and `segcli info` read a card and nothing else, so the two files
tile, threshold and describe alike.

On disk the card is one flat JSON object (docs/deployment.md lists its keys): the deployment contract
in plain keys any language reads (`in_channels`, `mean`, `std`, `size_multiple`, `binary`,
`threshold`, ...), plus what segcli itself needs (`train_size`, `data_info`, `architecture`, `judges`,
`training`, `quality`, `quantization`). Metadata version 1 (before the card) lacks `train_size`,
`judges` and `training`; such files still load and tile by image size alone.

torch-free: the ONNX Runtime path reads cards.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Optional

from segcli.config import DataInfo, ModelConfig, from_dict, to_dict
from segcli.errors import ModelFileError
from segcli.models.output import OutputSpec
from segcli.version import __version__

if TYPE_CHECKING:
    from segcli.checkpoint import Checkpoint

METADATA_VERSION = 2
INPUT_NAME, OUTPUT_NAME = "image", "probabilities"
ESTIMATOR_ROLE = "quality estimator"  # the `role` in an exported estimator's own metadata
# the training options `segcli info` shows (the card keeps them so an export shows the same)
TRAINING_KEYS = ("img_size", "batch_size", "gan", "adv_weight", "loss", "focal_gamma", "class_weights", "lr_g",
                 "lr_d", "seed", "precision", "time")


@dataclass(frozen=True)
class QualityCard:
    """The exported quality estimator: its file beside the model, what it estimates, its calibration
    (segcli.quality.Calibration as plain data; None when the run never finished) and its weights."""

    estimator: str
    target: str
    calibration: Optional[dict[str, Any]] = None
    weights_dtype: str = "float32"


@dataclass(frozen=True)
class ModelCard:
    """What a model is and how to feed and read it, whatever file holds it."""

    info: DataInfo
    output: OutputSpec
    architecture: Optional[ModelConfig] = None
    train_size: Optional[int] = None  # the training patch side: automatic tiling follows it
    threshold: float = 0.5  # binary models' foreground threshold
    judges: dict[str, str] = field(default_factory=dict)  # Checkpoint.judges(): discriminator, target, estimate
    training: dict[str, Any] = field(default_factory=dict)  # data, epochs, finished, TRAINING_KEYS
    data_summary: dict[str, Any] = field(default_factory=dict)  # split sizes, class pixels and weights
    best: dict[str, Any] = field(default_factory=dict)  # best epoch and its validation mIoU / Dice
    source: dict[str, Any] = field(default_factory=dict)  # checkpoint file name, epoch, its metrics
    quality: Optional[QualityCard] = None  # exported files only: the estimator beside the model
    weights_dtype: str = "float32"  # float32 | float16 (--half) | int8 (--int8)
    quantization: Optional[dict[str, Any]] = None  # --int8: how it was quantised, calibrated and verified
    segcli_version: str = __version__

    @classmethod
    def from_checkpoint(cls, ckpt: "Checkpoint", name: Optional[str] = None) -> "ModelCard":
        """The card of a checkpoint (`name`: the file name recorded as the source)."""
        train = to_dict(ckpt.train)
        best_row = next((r for r in ckpt.history if r.get("epoch") == ckpt.best_epoch), {})
        training = {"data": train.get("data"), "epochs_planned": train.get("epochs"), "epochs_run": ckpt.epoch,
                    "finished": ckpt.finished, **{k: train.get(k) for k in TRAINING_KEYS}}
        metrics = {k: _finite(v) for k, v in ckpt.metrics.items()}
        return cls(info=ckpt.data, output=ckpt.output, architecture=ckpt.model, train_size=_size(ckpt.train.img_size),
                   judges=dict(ckpt.judges()), training=training, data_summary=dict(ckpt.data_summary or {}),
                   best={"epoch": ckpt.best_epoch, "val_mIoU": _finite(best_row.get("val_mIoU")),
                         "val_Dice": _finite(best_row.get("val_Dice"))},
                   source={"checkpoint": name, "epoch": ckpt.epoch, "metrics": metrics},
                   segcli_version=ckpt.segcli_version)

    def exported(self, weights_dtype: str, quality: Optional[QualityCard] = None,
                 quantization: Optional[dict[str, Any]] = None) -> "ModelCard":
        """This card as an exported file carries it."""
        return replace(self, weights_dtype=weights_dtype, quality=quality, quantization=quantization,
                       segcli_version=__version__)

    # ------------------------------------------------------------------ the JSON form

    def to_json(self) -> dict[str, Any]:
        """The `segcli` metadata entry of an exported file (strict JSON: no NaN)."""
        info, out = self.info, self.output
        k, m = out.channels, out.size_multiple
        color = {1: "gray", 3: "RGB"}.get(info.in_channels, f"{info.in_channels} bands")
        return {
            "segcli_version": self.segcli_version, "metadata_version": METADATA_VERSION,
            "input_name": INPUT_NAME, "output_name": OUTPUT_NAME,
            "in_channels": info.in_channels, "color": color, "bands": info.in_channels,
            "display_bands": list(info.bands), "pixel_scale": {"uint8": 255, "uint16": 65535, "float": 1},
            "mean": list(info.mean), "std": list(info.std), "size_multiple": m, "pad_value": 0.0,
            "input": f"float32 (N, {info.in_channels}, H, W), NCHW, {color}: (pixel / 255 - mean) / std (16-bit: "
                     f"/ 65535; float data as stored); H, W multiples of {m}: pad bottom/right with 0 after "
                     "normalisation, crop the output back",
            "output": f"float32 (N, {k}, H, W): " + ("sigmoid probability of the foreground; foreground where > "
                                                      "threshold" if out.binary else f"softmax over {k} classes; label = argmax"),
            "activation": out.activation, "binary": out.binary, "num_classes": out.num_classes, "out_channels": k,
            "class_names": info.class_names(), "threshold": self.threshold if out.binary else None,
            "ignore_index": info.ignore_index, "weights_dtype": self.weights_dtype,
            "half": self.weights_dtype == "float16", "train_size": self.train_size,
            "data_info": asdict(info), "architecture": asdict(self.architecture) if self.architecture else None,
            "judges": dict(self.judges), "training": plain_json(self.training), "data_summary": plain_json(self.data_summary),
            "best": plain_json(self.best), "source": plain_json(self.source),
            "quality": asdict(self.quality) if self.quality else None, "quantization": self.quantization,
        }

    @classmethod
    def from_json(cls, meta: dict[str, Any], where: str) -> "ModelCard":
        """Read an exported file's entry; anything malformed is a one-line ModelFileError naming `where`."""
        if meta.get("role") == ESTIMATOR_ROLE:
            raise ModelFileError(f"{where}: this is the quality estimator of {meta.get('model_file', 'an exported model')}; "
                                 "pass that model to --model (its estimator is found beside it)")
        try:
            info = from_dict(DataInfo, meta["data_info"])
            output = OutputSpec(bool(meta["binary"]), int(meta["num_classes"]), int(meta["size_multiple"]))
            arch = meta.get("architecture")
            q = meta.get("quality")
            return cls(
                info=info, output=output, architecture=from_dict(ModelConfig, arch) if isinstance(arch, dict) else None,
                train_size=_size(meta.get("train_size")),
                threshold=float(meta["threshold"]) if meta.get("threshold") is not None else 0.5,
                judges=_dict(meta.get("judges")), training=_dict(meta.get("training")),
                data_summary=_dict(meta.get("data_summary")), best=_dict(meta.get("best")),
                source=_dict(meta.get("source")), quality=from_dict(QualityCard, q) if q else None,
                weights_dtype=str(meta.get("weights_dtype") or ("float16" if meta.get("half") else "float32")),
                quantization=meta.get("quantization") or None, segcli_version=str(meta.get("segcli_version") or "?"))
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"{where}: segcli metadata lacks data_info/size_multiple or is malformed; "
                                 "re-export it with `segcli export`") from None


def _size(value: Any) -> Optional[int]:
    try:
        return int(value) if value and int(value) > 0 else None
    except (TypeError, ValueError):
        return None


def _finite(v: Any) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def plain_json(v: Any) -> Any:
    """Plain JSON values: NaN and infinities become None, tuples lists."""
    if isinstance(v, dict):
        return {str(k): plain_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain_json(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # a numpy scalar
        v = v.item()
    if isinstance(v, float):
        return _finite(v)
    return v


def _dict(v: Any) -> dict[str, Any]:
    return dict(v) if isinstance(v, dict) else {}
