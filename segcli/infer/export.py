"""Export to ONNX or TorchScript, verified against PyTorch before the file is written.

The contract of every exported file (docs/deployment.md):
- input `image`: float32 (N, C, H, W), gray, RGB or C bands as `in_channels` says, normalised as
  (pixel / 255 - mean) / std (16-bit images: / 65535; float data: as stored); H and W multiples of `size_multiple`
  (pad bottom/right with 0 after normalisation, crop the output back). N, H, W are dynamic.
- output `probabilities`: float32 (N, C', H, W): sigmoid foreground probability (C' = 1)
  for binary models, softmax over the K classes otherwise.
- metadata: a JSON object under the key `segcli` (ONNX metadata_props; TorchScript extra
  files) holding all of the above, class names, the binary threshold and the training patch: the
  model's card (segcli.infer.card.ModelCard, written and read there and nowhere else).
`--half` stores fp16 weights behind the same float32 interface (casts inside the graph).

A model that holds a quality estimator exports it to ONNX as a second file beside the model,
`<stem>.quality.onnx` (inputs `image` as above and `probabilities` as the model outputs them;
output `error`: float32 (N, 1, H, W), the probability that each pixel's label is wrong), verified
the same way; the model's metadata names it under `quality` with the calibration. A separate graph,
because ONNX Runtime computes every output of a graph whatever the caller asks for: a combined graph
would cost plain predictions the estimator's time (docs/quality.md).
"""

from __future__ import annotations

import io
import json
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from segcli.version import __version__
from segcli.checkpoint import Checkpoint
from segcli.errors import ModelFileError, SegcliError, UserError
from segcli.fileio import atomic_write_bytes
from segcli.infer.card import ESTIMATOR_ROLE, INPUT_NAME, OUTPUT_NAME, ModelCard, QualityCard
from segcli.infer.onnxrt import META_KEY, run_onnx

FORMATS = ("onnx", "torchscript")
SUFFIXES = {".onnx": "onnx", ".torchscript": "torchscript", ".ts": "torchscript", ".jit": "torchscript"}
# Opset 17: ORT and OpenCV DNN (4.8+, 5.x) both run every op the U-Net exports to
# (Conv, Resize (nearest), MaxPool, Relu, Concat, Sigmoid/Softmax, Cast); BatchNorm is folded.
OPSET = 17
TOLERANCE_FP32, TOLERANCE_FP16 = 1e-4, 1e-2

__all__ = ["ExportResult", "export_model", "read_torchscript_metadata", "META_KEY"]


ESTIMATOR_INPUTS, ESTIMATOR_OUTPUT = ("image", "probabilities"), "error"


@dataclass
class ExportResult:
    path: Path
    format: str
    max_diff: float
    tolerance: float
    size_bytes: int = 0
    samples: list[tuple[int, ...]] = field(default_factory=list)
    card: Optional[ModelCard] = None  # what the file's metadata holds
    estimator_path: Optional[Path] = None  # <stem>.quality.onnx, when the model holds an estimator
    estimator_diff: float = 0.0


def estimator_path(model: Path) -> Path:
    """Where an exported model's quality estimator goes: `<stem>.quality.onnx` beside it."""
    return model.with_name(model.stem + ".quality.onnx")


def resolve_format(fmt: Optional[str], out: Optional[Path]) -> str:
    """--format, else from -o's suffix, else onnx; a suffix that contradicts --format is refused."""
    if out is not None and out.is_dir():
        out = None  # a folder: the file name is chosen for the format
    by_suffix = SUFFIXES.get(out.suffix.lower()) if out is not None else None
    if fmt is None:
        return by_suffix or "onnx"
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UserError(f"--format '{fmt}': expected onnx or torchscript")
    if out is not None and fmt == "onnx" and out.suffix.lower() != ".onnx":
        raise UserError(f"{out}: ONNX files must end in .onnx (predict and evaluate recognise them by it)")
    if by_suffix is not None and by_suffix != fmt:
        raise UserError(f"{out}: a .{out.suffix.lstrip('.')} file for --format {fmt}; use a .torchscript file name")
    return fmt


def _output_path(model: Path, fmt: str, out: Optional[Path]) -> Path:
    suffix = ".onnx" if fmt == "onnx" else ".torchscript"
    if out is None:
        path = model.with_suffix(suffix)
    elif out.is_dir():
        path = out / (model.stem + suffix)
    else:
        path = out
    if path.resolve() == model.resolve():
        raise UserError(f"{path}: output would overwrite the input model; choose another -o")
    return path


def _prob_module(gen: Any, fp16: bool) -> Any:
    import torch

    class Probabilities(torch.nn.Module):
        """Generator + activation; float32 in and out even with fp16 weights."""

        def __init__(self, g: torch.nn.Module, fp16: bool) -> None:
            super().__init__()
            self.g = g
            self.fp16 = fp16

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # no Cast nodes in an fp32 graph: cast only around fp16 weights
            logits = self.g(x.half()).float() if self.fp16 else self.g(x)
            return self.g.output.probabilities(logits)

    gen.pad_inside = False  # the caller pads: no shape arithmetic, no control flow in the graph
    if fp16:
        gen = gen.half()
    return Probabilities(gen, fp16).eval()


def _samples(channels: int, m: int) -> list[np.ndarray]:
    """Two verification batches of different N, H, W: a baked-in shape would show up."""
    s = max(2 * m, 64)
    rng = np.random.default_rng(0)
    return [rng.standard_normal((1, channels, s, s + m), dtype=np.float32),
            rng.standard_normal((2, channels, s + m, s), dtype=np.float32)]


def export_model(model: str | Path, fmt: Optional[str] = None, out: Optional[str | Path] = None,
                 half: bool = False, tolerance: Optional[float] = None) -> ExportResult:
    """Export a checkpoint, check it against the fp32 PyTorch model, then write it atomically."""
    import torch

    model = Path(model)
    out_arg = Path(out) if out is not None else None
    fmt = resolve_format(fmt, out_arg)
    if tolerance is not None and not (tolerance >= 0):
        raise UserError(f"--tolerance {tolerance}: expected a number >= 0")
    tol = tolerance if tolerance is not None else (TOLERANCE_FP16 if half else TOLERANCE_FP32)
    ckpt = Checkpoint.load(model)
    gen, info = ckpt.build_generator(), ckpt.data
    path = _output_path(model, fmt, out_arg)
    samples = _samples(info.in_channels, ckpt.output.size_multiple)
    with torch.no_grad():
        reference = [_prob_module(gen, False)(torch.from_numpy(x)).numpy() for x in samples]
    net = _prob_module(gen, half)
    example = torch.from_numpy(samples[0])
    est = _estimator_export(ckpt, path, samples, reference) if fmt == "onnx" and ckpt.has_estimator else None
    card = ModelCard.from_checkpoint(ckpt, model.name).exported("float16" if half else "float32",
                                                                 est[2] if est is not None else None)
    meta = card.to_json()
    if fmt == "onnx":
        data = _onnx_bytes(net, example, meta)
        outputs = [run_onnx(data, x, path) for x in samples]
    else:
        data, outputs = _torchscript_bytes(net, example, meta, samples)
    diff = _check(outputs, reference, tol, path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{path.parent}: cannot create the output folder ({e.strerror or e})") from None
    result = ExportResult(path, fmt, diff, tol, len(data), [tuple(x.shape) for x in samples], card)
    if est is not None:  # the estimator first: a model file never names a missing estimator
        atomic_write_bytes(estimator_path(path), est[0])
        result.estimator_path, result.estimator_diff = estimator_path(path), est[1]
    atomic_write_bytes(path, data)
    return result


def _check(outputs: list[np.ndarray], reference: list[np.ndarray], tol: float, path: Path) -> float:
    diff = max(float(np.abs(o.astype(np.float32) - r).max()) for o, r in zip(outputs, reference))
    if not np.isfinite(diff) or diff > tol:
        raise SegcliError(f"{path}: exported model differs from PyTorch by {diff:.3g} (tolerance {tol:g}); "
                          "file not written")
    return diff


def _estimator_export(ckpt: Checkpoint, path: Path, samples: list[np.ndarray],
                      probs: list[np.ndarray]) -> tuple[bytes, float, QualityCard]:
    """The quality estimator as its own ONNX graph (fp32), checked against PyTorch on the verification
    samples and the model's own probabilities: (file bytes, largest difference, the card's `quality`)."""
    import onnx
    import torch

    from segcli.infer.onnxrt import OnnxEstimator, session

    class ErrorProbability(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, image: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.net(image, probabilities))

    net = ErrorProbability(ckpt.build_estimator()).eval()
    args = [(torch.from_numpy(x), torch.from_numpy(p)) for x, p in zip(samples, probs)]
    with torch.no_grad():
        reference = [net(*a).numpy() for a in args]
    entry = QualityCard(estimator_path(path).name, "Dice" if ckpt.output.binary else "mIoU", ckpt.calibration)
    meta = {"segcli_version": __version__, "role": ESTIMATOR_ROLE, "model_file": path.name,
            "inputs": f"'image' as the model's input, 'probabilities' as the model's output ({ckpt.output.channels} "
                      "channel(s))", "output": "'error': float32 (N, 1, H, W), the probability that a pixel's label "
                      "is wrong", "target": entry.target, "calibration": entry.calibration}
    buf = io.BytesIO()
    axes = {"batch": 0, "height": 2, "width": 3}
    dyn = {n: {i: a for a, i in axes.items()} for n in (*ESTIMATOR_INPUTS, ESTIMATOR_OUTPUT)}
    with _quiet():
        torch.onnx.export(net, args[0], buf, dynamo=False, opset_version=OPSET, do_constant_folding=True,
                          input_names=list(ESTIMATOR_INPUTS), output_names=[ESTIMATOR_OUTPUT], dynamic_axes=dyn)
    proto = onnx.load_from_string(buf.getvalue())
    item = proto.metadata_props.add()
    item.key, item.value = META_KEY, json.dumps(meta, allow_nan=False)
    proto.producer_name, proto.producer_version = "segcli", __version__
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    est = OnnxEstimator(session(data, estimator_path(path)))
    diff = _check([est(x, p) for x, p in zip(samples, probs)], reference, TOLERANCE_FP32, estimator_path(path))
    return data, diff, entry


@contextmanager
def _quiet() -> Iterator[None]:
    """torch announces the legacy exporter's and TorchScript's deprecation on every call."""
    with warnings.catch_warnings():
        for cat in (DeprecationWarning, FutureWarning):
            warnings.simplefilter("ignore", cat)
        yield


def _onnx_bytes(net: Any, example: Any, meta: dict[str, Any]) -> bytes:
    """The legacy (TorchScript-based) exporter: a static graph with BatchNorm folded into Conv.

    The dynamo exporter keeps BatchNormalization nodes and adds shape ops that OpenCV DNN
    handles less well; this graph is plain feed-forward, dynamic only in N, H and W.
    """
    import onnx
    import torch

    buf = io.BytesIO()
    with _quiet():
        torch.onnx.export(
            net, (example,), buf, dynamo=False, opset_version=OPSET, do_constant_folding=True,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                          OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"}},
        )
    proto = onnx.load_from_string(buf.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta, allow_nan=False)
    proto.producer_name, proto.producer_version = "segcli", __version__
    proto.doc_string = f"{meta['input']} -> {meta['output']}; see metadata '{META_KEY}'"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _torchscript_bytes(net: Any, example: Any, meta: dict[str, Any],
                       samples: list[np.ndarray]) -> tuple[bytes, list[np.ndarray]]:
    """Trace (no control flow to lose), save with the metadata, reload and run the reloaded module."""
    import torch

    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(net, example, check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf, _extra_files={META_KEY: json.dumps(meta, allow_nan=False)})
        data = buf.getvalue()
        extra = {META_KEY: ""}
        loaded = torch.jit.load(io.BytesIO(data), _extra_files=extra)
    if json.loads(extra[META_KEY]) != json.loads(json.dumps(meta)):
        raise SegcliError("TorchScript metadata did not survive a save/load round trip")
    with torch.no_grad():
        outputs = [loaded(torch.from_numpy(x)).float().numpy() for x in samples]
    return data, outputs


def read_torchscript_metadata(path: str | Path) -> dict[str, Any]:
    """The `segcli` extra file of an exported TorchScript model (needs torch)."""
    import torch

    extra = {META_KEY: ""}
    try:
        with _quiet():
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as e:
        raise ModelFileError(f"{path}: not a TorchScript model ({type(e).__name__})") from None
    if not extra[META_KEY]:
        raise ModelFileError(f"{path}: TorchScript model without segcli metadata; export it with `segcli export`")
    return json.loads(extra[META_KEY])
