"""`segcli predict`: images in, mask files out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from segcli.cli import app


@app.command()
def predict(
    sources: list[str] = typer.Argument(..., help="Image files, folders, quoted globs, or - for paths on stdin."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint (.pt) or exported .onnx; default: newest run's best.pt."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Mask file (one input) or folder; default runs/predict/NAME."),
    overlay: bool = typer.Option(False, "--overlay", help="Also write <stem>_overlay.png: the mask blended over the image."),
    batch_size: int = typer.Option(4, "--batch-size", "-b", help="Images per forward pass."),
    threshold: float = typer.Option(0.5, help="Foreground probability threshold (binary models)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N | mps"),
    precision: str = typer.Option("auto", help="auto | 32 | bf16 | 16"),
    name: str = typer.Option("exp", help="Folder name under runs/predict/ when -o is not given."),
    json_out: bool = typer.Option(False, "--json", help="One JSON line per input on stdout."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: only the I-th (0-based) of N disjoint parts of the sorted inputs; under torchrun: RANK/WORLD_SIZE."),
) -> None:
    """Predict masks (8-bit 0/255 for binary, palette PNG of class indices otherwise)."""
    from segcli.console import err, info
    from segcli.errors import UserError
    from segcli.inference import load_predictor, resolve_model
    from segcli.predict import collect_inputs, plan_outputs, run_predict
    from segcli.ranks import local_device, shard as take_shard, shard_spec
    from segcli.runs import new_run_dir

    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--threshold {threshold}: a foreground probability, from 0 to 1")
    part = shard_spec(shard)
    inputs, problems = collect_inputs(sources)
    if not inputs:  # nothing to do: one line saying why
        raise UserError("; ".join(problems) if problems else "no input images; pass image files, folders, globs or - for stdin")
    for p in problems:
        err().print(f"error: {p}", markup=False)
    single = len(inputs) == 1 and output is not None and Path(output).suffix.lower() in (".png", ".tif", ".tiff", ".bmp")
    # shards share one output folder; names are planned over all (sorted) inputs so parts never collide
    if part is not None:
        inputs = sorted(inputs, key=str)
    out = Path(output) if output else new_run_dir("runs/predict", name, exist_ok=part is not None)
    plan = plan_outputs(inputs, out, single)
    if part is not None:
        inputs = take_shard(inputs, *part)
        info(f"shard {part[0]}/{part[1]}: {len(inputs)} of {len(plan)} input(s)")
    predictor = load_predictor(resolve_model(model), local_device(device), precision)
    predictor.threshold = threshold

    def report(res) -> None:
        if json_out:
            print(json.dumps({"input": str(res.input), "output": str(res.output) if res.output else None,
                              "seconds": res.seconds, "fractions": res.fractions, "error": res.error}), flush=True)
        if res.error:
            err().print(f"error: {res.error}", markup=False)

    results = run_predict(predictor, inputs, plan, overlay, batch_size, report)
    failed = [r for r in results if r.error]
    info(f"{len(results) - len(failed)} mask(s) written to {out}")
    if failed or problems:
        raise UserError(f"{len(failed) + len(problems)} input(s) could not be read (named above); the other masks were written")
