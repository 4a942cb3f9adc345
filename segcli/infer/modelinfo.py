"""`segcli info`: what a checkpoint (.pt) or an exported model (.onnx, .torchscript) holds.

Reads the file's own metadata only (no model is built, no data is needed); torch is imported
for .pt and .torchscript files, ONNX Runtime for .onnx. Both are read into a ModelCard
(segcli.infer.card) and shown through `card_facts`, so a checkpoint and its exports show the same
facts; a checkpoint adds what only it holds (parameter counts, resumability, this epoch's metrics).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from segcli.config import to_dict
from segcli.errors import ModelFileError
from segcli.infer.card import ModelCard, QualityCard, plain_json

_BUFFERS = ("running_mean", "running_var", "num_batches_tracked", "weight_u", "weight_v")


def _param_count(state: Optional[dict[str, Any]]) -> Optional[int]:
    """Trainable parameters from a state_dict: BatchNorm statistics and spectral-norm vectors left out."""
    if not state:
        return None
    return int(sum(t.numel() for k, t in state.items() if not k.endswith(_BUFFERS)))


def card_facts(card: ModelCard) -> dict[str, Any]:
    """What `segcli info` shows of a model's card: the same keys and values for a checkpoint and the
    files exported from it."""
    info = card.info
    q = card.quality
    return {
        "task": "binary" if info.binary else "multiclass",
        "num_classes": info.num_classes,
        "classes": info.class_names(),
        "ignore_index": info.ignore_index,
        "in_channels": info.in_channels,
        "bands": info.in_channels,
        "display_bands": list(info.bands),
        "out_channels": info.out_channels,
        "normalization": {"mean": [round(float(v), 6) for v in info.mean],
                          "std": [round(float(v), 6) for v in info.std],
                          "input": "pixel / max value (255 or 65535; float data as stored), then (x - mean) / std"},
        "architecture": {**(to_dict(card.architecture) if card.architecture else {}),
                         "size_multiple": card.output.size_multiple, "activation": card.output.activation},
        "train_size": card.train_size,
        "threshold": card.threshold if info.binary else None,
        "training": plain_json(card.training) or None,
        "data": plain_json(card.data_summary) or None,
        "best": plain_json(card.best) or None,
        "judges": dict(card.judges) or None,
        "quality_estimator": {"target": q.target, "calibration": (q.calibration or {}).get("fitted_on")
                              or {"calibrated": False}} if q else None,
    }


def _checkpoint_info(path: Path) -> dict[str, Any]:
    from segcli.checkpoint import Checkpoint

    ckpt = Checkpoint.load(path)
    card = ModelCard.from_checkpoint(ckpt, path.name)
    if ckpt.has_estimator:  # the checkpoint's estimator has the card an export gives it
        cal = ckpt.calibration or {}
        card = replace(card, quality=QualityCard("", cal.get("target") or ("Dice" if ckpt.data.binary else "mIoU"),
                                                 ckpt.calibration))
    facts = card_facts(card)
    facts["architecture"].update(generator_parameters=_param_count(ckpt.generator),
                                 # the flaw D is the estimator: one network judges in training and after
                                 discriminator_parameters=_param_count(
                                     ckpt.estimator if ckpt.train.gan == "flaw" else ckpt.discriminator))
    facts["training"]["resumable"] = ckpt.resumable
    if facts["quality_estimator"] is not None:
        facts["quality_estimator"]["parameters"] = _param_count(ckpt.estimator)
    return {"path": str(path), "kind": "checkpoint", "segcli_version": ckpt.segcli_version,
            "checkpoint_format": ckpt.format, **facts,
            "this_epoch": {"epoch": ckpt.epoch, **{f"val_{k}": v for k, v in ckpt.metrics.items()}}}


def _exported_info(path: Path, kind: str, card: ModelCard) -> dict[str, Any]:
    facts = card_facts(card)
    if card.quality is not None and facts["quality_estimator"] is not None:
        facts["quality_estimator"].update(file=card.quality.estimator, weights_dtype=card.quality.weights_dtype)
    # the file's deployment contract (input/output names and layout, colour, bands, ...), beside the facts
    shown = ("data_info", "architecture", "size_multiple", "segcli_version", "class_names", "training",
             "data_summary", "best", "judges", "quality", "train_size")
    export = {k: v for k, v in card.to_json().items() if k not in shown}
    return {"path": str(path), "kind": kind, "segcli_version": card.segcli_version, **facts, "export": export}


def model_info(path: str | Path) -> dict[str, Any]:
    """A JSON-ready description of a segcli model file."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from segcli.infer.onnxrt import read_onnx_metadata

        return _exported_info(path, "onnx", ModelCard.from_json(read_onnx_metadata(path), str(path)))
    if suffix in (".torchscript", ".ts", ".jit"):
        from segcli.infer.export import read_torchscript_metadata

        return _exported_info(path, "torchscript", ModelCard.from_json(read_torchscript_metadata(path), str(path)))
    return _checkpoint_info(path)
