"""`segcli export`: ONNX or TorchScript, checked against PyTorch."""

from __future__ import annotations

from typing import Optional

import typer

from segcli.cli import app


@app.command()
def export(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint to export; default: newest run's best.pt."),
    format: str = typer.Option("onnx", "--format", "-f", help="onnx | torchscript"),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Output file; default: next to the checkpoint."),
    half: bool = typer.Option(False, "--half", help="fp16 weights (GPU targets); checked at a looser tolerance."),
) -> None:
    """Export a model for deployment and print the largest difference from PyTorch."""
    from segcli.console import info, out
    from segcli.export import export_model
    from segcli.inference import resolve_model

    result = export_model(resolve_model(model), format, output, half)
    info(f"exported {result.format}: max |difference| vs PyTorch = {result.max_diff:.3g} (tolerance {result.tolerance:g})")
    out().print(str(result.path))
