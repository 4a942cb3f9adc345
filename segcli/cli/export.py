"""`segcli export`: ONNX or TorchScript, checked against PyTorch before it is written."""

from __future__ import annotations

from typing import Optional

import typer

from segcli.cli.app import app
from segcli.cli.common import configurable


@app.command()
@configurable
def export(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint to export; default: newest run's best.pt."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="onnx | torchscript; default: from -o's suffix, else onnx."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Output file or folder; default: next to the checkpoint."),
    half: bool = typer.Option(False, "--half", help="fp16 weights behind the same float32 input/output (GPU targets; see docs/deployment.md)."),
    tolerance: Optional[float] = typer.Option(None, help="Largest allowed |difference| from PyTorch; default 1e-4 (1e-2 with --half)."),
) -> None:
    """Export a model for deployment; print the largest difference from PyTorch (exit 1 above the tolerance)."""
    from segcli.console import info, out
    from segcli.infer.export import OPSET, export_model
    from segcli.infer.predictor import resolve_model

    r = export_model(resolve_model(model), format, output, half, tolerance)
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


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"
