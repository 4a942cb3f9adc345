"""`segcli evaluate`: per-class and mean IoU / Dice of a model on labelled data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from segcli.cli.app import app
from segcli.cli.common import configurable
from segcli.cli import options as opt


@app.command()
@configurable
def evaluate(
    data: str = typer.Argument(..., help="Folder with images/+masks/, a split dataset (test/, else val/), or a COCO, VOC or Cityscapes folder."),
    model: Optional[str] = opt.MODEL,
    ignore_index: Optional[int] = typer.Option(None, help="Mask value to ignore (default: the model's)."),
    save_dir: Optional[str] = typer.Option(None, "--save-dir", help="Write the predicted masks (masks/), confusion_matrix.png and metrics.json here."),
    batch_size: int = opt.BATCH_SIZE,
    threshold: Optional[float] = opt.THRESHOLD,
    tile: Optional[int] = opt.TILE,
    no_tile: bool = opt.NO_TILE,
    overlap: float = opt.OVERLAP,
    tta: bool = opt.TTA,
    device: str = opt.DEVICE,
    precision: str = opt.PRECISION,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout and nothing else there."),
    quality: bool = typer.Option(False, "--quality", help="Also report how far the label-free quality estimate can be trusted here: its rank correlation with the true per-image mIoU (binary: Dice) and pixel accuracy, its error, risk-coverage and the error map's per-pixel AUROC, beside the max-softmax and entropy baselines."),
) -> None:
    """Score a model: per-class and mean IoU and Dice, pixel accuracy, precision, recall."""
    from segcli.console import fmt, info, out
    from segcli.data import eval_samples
    from segcli.infer.evaluate import run_evaluate
    from segcli.infer.options import InferenceOptions
    from segcli.infer.predictor import load_predictor, resolve_model

    options = InferenceOptions.from_flags(tile, no_tile, device=device, precision=precision, overlap=overlap, tta=tta,
                                          threshold=threshold, batch_size=batch_size, quality=quality,
                                          baselines=quality)
    samples = eval_samples(data)
    path = resolve_model(model)
    predictor = load_predictor(path, options)
    result = run_evaluate(predictor, samples, ignore_index, Path(save_dir) if save_dir else None)
    result["model"] = str(path)
    if save_dir:
        info(f"masks, confusion_matrix.png and metrics.json written to {save_dir}")
    if json_out:
        print(json.dumps(result))
        return
    from rich.table import Table

    table = Table(title=f"{path} on {data} ({result['images']} images)", title_justify="left")
    for col in ("class", "IoU", "Dice", "precision", "recall", "pixels"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for row in result["per_class"]:
        cells = ["absent"] * 4 if row["absent"] else [fmt(row[k]) for k in ("iou", "dice", "precision", "recall")]
        table.add_row(row["name"], *cells, str(row["pixels"]))
    table.add_section()
    table.add_row("mean", fmt(result["mIoU"]), fmt(result["mDice"]), "", "", "")
    out().print(table)
    out().print(f"pixel accuracy {fmt(result['pixel_accuracy'])}"
                + (f"; ignore index {result['ignore_index']}" if result["ignore_index"] is not None else ""))
    if "quality" in result:
        _trust_table(result["quality"])


def _trust_table(q: dict) -> None:
    from rich.table import Table

    from segcli.console import fmt, out

    table = Table(title=f"how far the quality estimate can be trusted ({q['images']} images; estimated {q['target']})",
                  title_justify="left")
    for col in ("signal", f"Spearman {q['target']}", "Spearman pixel acc", "MAE", "AURC", "pixel AUROC"):
        table.add_column(col, justify="left" if col == "signal" else "right")
    names = {"estimate": "estimate (error map + calibration)", "max_softmax": "max-softmax (baseline)",
             "neg_entropy": "entropy (baseline)"}
    for key, name in names.items():
        r = q[key]
        table.add_row(name, *(fmt(r.get(k)) for k in ("spearman_quality", "spearman_accuracy", "mae", "aurc",
                                                      "pixel_auroc")))
    out().print(table)
    out().print(f"AURC of a perfect ranking {fmt(q['oracle_aurc'])}; lower is better. Pixel AUROC over "
                f"{q['pixels']} sampled labelled pixels.")
