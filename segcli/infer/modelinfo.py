"""`segcli info`: what a checkpoint (.pt) or an exported model (.onnx, .torchscript) holds.

Reads the file's own metadata only (no model is built, no data is needed); torch is imported
for .pt and .torchscript files, ONNX Runtime for .onnx.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from segcli.config import DataInfo, from_dict
from segcli.errors import ModelFileError

_BUFFERS = ("running_mean", "running_var", "num_batches_tracked", "weight_u", "weight_v")


def _param_count(state: Optional[dict[str, Any]]) -> Optional[int]:
    """Trainable parameters from a state_dict: BatchNorm statistics and spectral-norm vectors left out."""
    if not state:
        return None
    return int(sum(t.numel() for k, t in state.items() if not k.endswith(_BUFFERS)))


def _data_part(info: DataInfo) -> dict[str, Any]:
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
    }


def _checkpoint_info(path: Path) -> dict[str, Any]:
    from segcli.checkpoint import Checkpoint
    from segcli.config import to_dict

    ckpt = Checkpoint.load(path)
    train = to_dict(ckpt.train)
    best_row = next((r for r in ckpt.history if r.get("epoch") == ckpt.best_epoch), {})
    return {
        "path": str(path), "kind": "checkpoint", "segcli_version": ckpt.segcli_version,
        "checkpoint_format": ckpt.format, **_data_part(ckpt.data),
        "architecture": {**to_dict(ckpt.model), "size_multiple": ckpt.output.size_multiple,
                         "activation": ckpt.output.activation,
                         "generator_parameters": _param_count(ckpt.generator),
                         "discriminator_parameters": _param_count(ckpt.discriminator)},
        "training": {
            "data": train.get("data"), "epochs_planned": train.get("epochs"), "epochs_run": ckpt.epoch,
            "finished": ckpt.finished, "resumable": ckpt.resumable,
            **{k: train.get(k) for k in ("img_size", "batch_size", "gan", "adv_weight", "loss", "focal_gamma",
                                          "class_weights", "lr_g", "lr_d", "seed", "precision", "time")},
        },
        "data": ckpt.data_summary or None,
        "best": {"epoch": ckpt.best_epoch, "val_mIoU": best_row.get("val_mIoU"), "val_Dice": best_row.get("val_Dice")},
        "this_epoch": {"epoch": ckpt.epoch, **{f"val_{k}": v for k, v in ckpt.metrics.items()}},
        "quality_estimator": _estimator_part(ckpt),
    }


def _estimator_part(ckpt: Any) -> Optional[dict[str, Any]]:
    """The quality estimator's size and calibration, or None (trained without one, or before it existed)."""
    if not ckpt.has_estimator:
        return None
    cal = ckpt.calibration or {}
    return {"parameters": _param_count(ckpt.estimator), "target": cal.get("target"),
            "calibration": cal.get("fitted_on") or {"calibrated": False}}


def _exported_info(path: Path, kind: str, meta: dict[str, Any]) -> dict[str, Any]:
    info = from_dict(DataInfo, meta.get("data_info", {}))
    arch = dict(meta.get("architecture") or {})
    arch["size_multiple"] = meta.get("size_multiple")
    # training / data / best: shown when the exporter stored them (the checkpoint always has them)
    passed = ("training", "data", "best")
    extra = {k: v for k, v in meta.items() if k not in ("data_info", "architecture", "size_multiple",
                                                       "segcli_version", "class_names", *passed)}
    q = meta.get("quality") if isinstance(meta.get("quality"), dict) else None
    estimator = {"file": q.get("estimator"), "target": q.get("target"),
                 "calibration": (q.get("calibration") or {}).get("fitted_on") or {"calibrated": False}} if q else None
    extra.pop("quality", None)
    return {"path": str(path), "kind": kind, "segcli_version": meta.get("segcli_version"), **_data_part(info),
            "architecture": arch, **{k: meta[k] for k in passed if k in meta}, "export": extra,
            "quality_estimator": estimator}


def model_info(path: str | Path) -> dict[str, Any]:
    """A JSON-ready description of a segcli model file."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from segcli.infer.onnxrt import read_onnx_metadata

        return _exported_info(path, "onnx", read_onnx_metadata(path))
    if suffix in (".torchscript", ".ts", ".jit"):
        from segcli.infer.export import read_torchscript_metadata

        return _exported_info(path, "torchscript", read_torchscript_metadata(path))
    return _checkpoint_info(path)
