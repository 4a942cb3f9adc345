"""`segcli export`: ONNX or TorchScript, checked against PyTorch before it is written; `--int8`: a
quantised ONNX model, checked against the fp32 one on labelled images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from segcli.cli.app import app
from segcli.cli.common import configurable


@app.command()
@configurable
def export(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint to export; default: newest run's best.pt."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="onnx | torchscript; default: from -o's suffix, else onnx."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Output file or folder; default: next to the checkpoint (best.onnx; --int8: best.int8.onnx)."),
    half: bool = typer.Option(False, "--half", help="fp16 weights behind the same float32 input/output (GPU targets; see docs/deployment.md)."),
    int8: bool = typer.Option(False, "--int8", help="A statically quantised ONNX model (uint8 activations, int8 weights; faster on CPUs), calibrated on --calibrate and verified on --verify against the fp32 model."),
    calibrate: Optional[str] = typer.Option(None, "--calibrate", metavar="DIR", help="--int8: images to calibrate the activation ranges on (up to 32 used); default: the run's training images, if still there."),
    verify: Optional[str] = typer.Option(None, "--verify", metavar="DATA", help="--int8: labelled images (as evaluate takes them) to compare int8 and fp32 masks on; default: the run's validation images, if still there."),
    tolerance: Optional[float] = typer.Option(None, help="Largest allowed |difference| from PyTorch; default 1e-4 (1e-2 with --half). With --int8: the largest mIoU loss against fp32 on --verify, default 0.01 (above it: exit 1, nothing written)."),
) -> None:
    """Export a model for deployment; print the largest difference from PyTorch (exit 1 above the tolerance)."""
    from segcli.console import info, out
    from segcli.infer.export import OPSET, export_model
    from segcli.infer.predictor import resolve_model

    path = resolve_model(model)
    if int8:
        _int8(path, format, output, half, calibrate, verify, tolerance)
        return
    r = export_model(path, format, output, half, tolerance)
    meta = r.card.to_json()
    what = f"opset {OPSET}, " if r.format == "onnx" else ""
    info(f"exported {r.format} ({what}{meta['weights_dtype']} weights, {_size(r.size_bytes)}): {r.path}")
    info(f"  input  '{meta['input_name']}' {meta['input']}")
    info(f"  output '{meta['output_name']}' {meta['output']}")
    shapes = ", ".join("x".join(map(str, s)) for s in r.samples)
    info(f"max |difference| vs PyTorch = {r.max_diff:.3g} on inputs {shapes} (tolerance {r.tolerance:g})")
    if r.estimator_path is not None:
        info(f"quality estimator (predict --quality finds it beside the model): {r.estimator_path}; "
             f"max |difference| vs PyTorch = {r.estimator_diff:.3g}")
    out().print(str(r.path))


def _int8(path: Path, fmt: Optional[str], output: Optional[str], half: bool, calibrate: Optional[str],
          verify: Optional[str], tolerance: Optional[float]) -> None:
    from segcli.console import info, out
    from segcli.errors import UserError
    from segcli.infer.int8 import Int8Config, export_int8

    if half or (fmt or "onnx").lower() != "onnx" or (output and Path(output).suffix.lower() not in (".onnx", "")):
        raise UserError("--int8 writes an ONNX model: drop --half / --format torchscript, and name a .onnx file or a folder")
    r = export_int8(Int8Config(path, Path(output) if output else None, Path(calibrate) if calibrate else None, verify,
                               0.01 if tolerance is None else tolerance))
    q = r.card.quantization or {}
    v = q.get("verified") or {}
    info(f"exported int8 ONNX ({q.get('format')}, {_size(r.size_bytes)}; fp32 {_size(r.fp32_bytes)}): {r.path}")
    info(f"calibrated on {q['calibration']['images']} images of {q['calibration']['source']}")
    info(f"verified on {v['images']} images of {v['data']}: mIoU int8 {v['mIoU_int8']:.4f} vs fp32 "
         f"{v['mIoU_fp32']:.4f} (loss {v['loss']:.4f}, tolerance {v['tolerance']:g}); "
         f"{v['agreement']:.4%} of mask pixels equal")
    if r.estimator_path is not None and r.card.quality is not None:
        info(f"quality estimator ({r.card.quality.weights_dtype}): {r.estimator_path}")
    out().print(str(r.path))


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"
