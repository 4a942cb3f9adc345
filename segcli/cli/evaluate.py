"""`segcli evaluate`: per-class and mean IoU / Dice of a model on labelled data."""

from __future__ import annotations

import json
from typing import Optional

import typer

from segcli.cli import app


@app.command()
def evaluate(
    data: str = typer.Argument(..., help="Folder with images/+masks/, or a split dataset (test/, else val/)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint (.pt) or .onnx; default: newest run's best.pt."),
    ignore_index: Optional[int] = typer.Option(None, help="Mask value to ignore (default: the model's)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N | mps"),
    precision: str = typer.Option("auto", help="auto | 32 | bf16 | 16"),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout and nothing else there."),
) -> None:
    """Score a model: per-class and mean IoU and Dice, pixel accuracy, precision, recall."""
    from segcli.console import fmt, out
    from segcli.data import eval_samples
    from segcli.evaluate import run_evaluate
    from segcli.inference import load_predictor, resolve_model

    samples = eval_samples(data)
    path = resolve_model(model)
    predictor = load_predictor(path, device, precision)
    result = run_evaluate(predictor, samples, ignore_index)
    result["model"] = str(path)
    if json_out:
        print(json.dumps(result))
        return
    from rich.table import Table

    table = Table(title=f"{path} on {data} ({result['images']} images)", title_justify="left")
    for col in ("class", "IoU", "Dice", "precision", "recall", "pixels"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for row in result["per_class"]:
        absent = row["iou"] is None
        table.add_row(row["name"], *(["absent"] * 4 if absent else [fmt(row[k]) for k in ("iou", "dice", "precision", "recall")]), str(row["pixels"]))
    table.add_section()
    table.add_row("mean", fmt(result["mIoU"]), fmt(result["mDice"]), "", "", "")
    out().print(table)
    out().print(f"pixel accuracy {fmt(result['pixel_accuracy'])}")
