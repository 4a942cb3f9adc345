"""Export to ONNX or TorchScript, verified against PyTorch after every export.

The exported graph takes a normalised float32 batch (N, C, H, W), H and W multiples of
`size_multiple` (stored in the metadata; pad before, crop after), and returns per-class
probabilities (N, C', H, W): sigmoid foreground probability (C' = 1) for binary models,
softmax over K classes otherwise. Everything a deployer needs (channels, mean/std, size
multiple, classes, threshold) is stored in the file: ONNX metadata_props, TorchScript
extra files, under the key `segcli`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from segcli import __version__
from segcli.config import DataInfo, from_dict
from segcli.errors import ModelFileError, SegcliError, UserError

FORMATS = ("onnx", "torchscript")
META_KEY = "segcli"


@dataclass
class ExportResult:
    path: Path
    format: str
    max_diff: float
    tolerance: float


def metadata(info: DataInfo, size_multiple: int, extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    return {
        "segcli_version": __version__,
        "data_info": asdict(info),
        "class_names": info.class_names(),
        "size_multiple": size_multiple,
        "input": "float32 (N, C, H, W): (pixel/max - mean) / std, H and W multiples of size_multiple",
        "output": "sigmoid foreground probability (N, 1, H, W)" if info.binary
        else f"softmax probabilities (N, {info.num_classes}, H, W)",
        "threshold": 0.5 if info.binary else None,
        **(extra or {}),
    }


def _prob_module(gen: Any) -> Any:
    import torch

    class Probabilities(torch.nn.Module):
        def __init__(self, g: torch.nn.Module) -> None:
            super().__init__()
            self.g = g
            self.binary = g.head.out_channels == 1

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = self.g(x)
            return torch.sigmoid(logits) if self.binary else torch.softmax(logits, dim=1)

    gen.pad_inside = False  # the caller pads: no shape arithmetic in the graph
    return Probabilities(gen).eval()


def export_model(model: str | Path, fmt: str, out: Optional[str | Path] = None, half: bool = False,
                 tolerance: Optional[float] = None) -> ExportResult:
    import torch

    from segcli import checkpoint

    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UserError(f"--format '{fmt}': expected onnx or torchscript")
    model = Path(model)
    gen, mcfg, info = checkpoint.model_from_checkpoint(checkpoint.load(model))
    out_path = Path(out) if out else model.with_suffix(".onnx" if fmt == "onnx" else ".torchscript")
    if out_path.resolve() == model.resolve():
        raise UserError(f"{out_path}: output would overwrite the input model; choose another -o")
    m = gen.size_multiple
    net = _prob_module(gen)
    size = max(2 * m, 64)
    sample = torch.randn(1, info.in_channels, size, size + m, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = net(sample).numpy()
    if half:
        net = net.half()
    meta = metadata(info, m, {"architecture": asdict(mcfg), "half": half})
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tol = tolerance if tolerance is not None else (1e-2 if half else 1e-4)
    x = sample.half() if half else sample
    if fmt == "onnx":
        _export_onnx(net, x, out_path, meta)
        got = _run_onnx(out_path, sample.numpy())
    else:
        with torch.inference_mode():
            traced = torch.jit.trace(net, x, check_trace=False)
        torch.jit.save(traced, str(out_path), _extra_files={META_KEY: json.dumps(meta)})
        loaded = torch.jit.load(str(out_path))
        with torch.inference_mode():
            got = loaded(x).float().numpy()
    diff = float(np.abs(got.astype(np.float32) - reference).max())
    if not np.isfinite(diff) or diff > tol:
        raise SegcliError(f"{out_path}: exported model differs from PyTorch by {diff:.3g} (tolerance {tol:g})")
    return ExportResult(out_path, fmt, diff, tol)


def _export_onnx(net: Any, x: Any, path: Path, meta: dict[str, Any]) -> None:
    import onnx
    import torch

    tmp = path.with_name(f".{path.name}.tmp")
    torch.onnx.export(
        net, (x,), str(tmp), dynamo=False, opset_version=17, input_names=["image"],
        output_names=["probabilities"],
        dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                      "probabilities": {0: "batch", 2: "height", 3: "width"}},
    )
    proto = onnx.load(str(tmp))
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    proto.producer_name = "segcli"
    onnx.save(proto, str(tmp))
    tmp.replace(path)


def _session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ModelFileError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0][:160]})") from None


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    sess = _session(path)
    inp = sess.get_inputs()[0]
    if "float16" in inp.type:
        x = x.astype(np.float16)
    return sess.run(None, {inp.name: x})[0].astype(np.float32)


def read_onnx_metadata(path: Path) -> dict[str, Any]:
    meta = _session(path).get_modelmeta().custom_metadata_map
    if META_KEY not in meta:
        raise ModelFileError(f"{path}: ONNX model without segcli metadata; export it with `segcli export`")
    return json.loads(meta[META_KEY])


def onnx_predictor(path: Path) -> Any:
    """A Predictor running the exported model in ONNX Runtime (no torch import)."""
    from segcli.inference import Predictor

    sess = _session(path)
    meta_map = sess.get_modelmeta().custom_metadata_map
    if META_KEY not in meta_map:
        raise ModelFileError(f"{path}: ONNX model without segcli metadata; export it with `segcli export`")
    meta = json.loads(meta_map[META_KEY])
    inp = sess.get_inputs()[0]
    dtype = np.float16 if "float16" in inp.type else np.float32

    def backend(batch: np.ndarray) -> np.ndarray:
        return sess.run(None, {inp.name: batch.astype(dtype)})[0].astype(np.float32)

    info = from_dict(DataInfo, meta["data_info"])
    return Predictor(backend, info, int(meta["size_multiple"]), meta)
