"""`segcli check`: validate a dataset without training; report, warnings, suggested settings."""

from __future__ import annotations

import json
from typing import Any, Optional

import typer

from segcli.cli.app import app
from segcli.cli.common import apply_config, apply_quiet, config_option, quiet_option, require


@app.command()
def check(
    ctx: typer.Context,
    data: Optional[str] = typer.Argument(None, metavar="DATA", help="Dataset folder (images/+masks/, train/+val/, or a COCO, VOC or Cityscapes folder).", show_default=False),
    val_split: float = typer.Option(0.2, help="Validation share of a flat images/+masks/ dataset (as train)."),
    seed: int = typer.Option(0, help="Seed of the validation split (as train)."),
    ignore_index: Optional[int] = typer.Option(None, help="Mask value that marks void pixels (default 255 for multi-class data)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON report on stdout and nothing else there."),
    quiet: bool = quiet_option(),
    config: Optional[str] = config_option(),
) -> None:
    """Validate a dataset as train would, naming every bad file; class histogram and suggested settings."""
    from segcli.console import err
    from segcli.data.doctor import check_dataset
    from segcli.errors import DataError

    apply_quiet(quiet)
    params = apply_config(ctx, config)
    data = require(params, "data", "segcli check data/")
    report = check_dataset(data, params["val_split"], params["seed"], params["ignore_index"])
    if params["json_out"]:
        print(json.dumps(report.to_dict()))
    else:
        _print_report(report)
    for p in report.problems:
        err().print(f"error: {p.line()}", markup=False, highlight=False)
    if not report.ok:
        files = {f for p in report.problems for f in p.files}
        raise DataError(f"{data}: {len(report.problems)} problem(s) in {len(files)} file(s) (listed above); "
                        f"fix them and run `segcli check {data}` again")


def _print_report(report: Any) -> None:
    from rich.table import Table

    from segcli import console
    from segcli.console import fmt, out
    from segcli.data.formats import NAMES

    if console.QUIET:
        return
    o = out()
    splits = ", ".join(f"{n} {k}" for k, n in report.splits.items())
    im = report.images
    source = "" if report.format == "plain" else f"{NAMES[report.format]} format, "
    o.print(f"[bold]{report.data}[/]: {source}{report.layout} layout, {splits or 'no'} images")
    if im.get("count"):
        sizes = ", ".join(f"{s} ({n})" for s, n in im["common_sizes"].items())
        chans = ", ".join(f"{n} {k}" if k in ("gray", "colour") else f"{n} of {k}" for k, n in im["channels"].items())
        modes = ", ".join(f"{k} ({n})" for k, n in im["modes"].items())
        o.print(f"images: {im['distinct_sizes']} distinct size(s), smallest {im['min_size'][0]}x{im['min_size'][1]}, "
                f"largest {im['max_size'][0]}x{im['max_size'][1]}; most common {sizes}")
        model = f"a {im['in_channels']}-channel model" if im["in_channels"] else "no model (mixed band counts)"
        o.print(f"channels: {chans} (modes {modes}) -> {model}")
    if report.classes:
        kind = "binary (0/255 masks)" if report.binary else f"{report.num_classes} classes"
        ignore = ""
        if report.ignore_index is not None:
            ignore = f", ignore index {report.ignore_index} ({report.images.get('ignored_share', 0):.2%} of pixels)"
        table = Table(title=f"classes: {kind}{ignore}", title_justify="left")
        for col in ("#", "class", "pixel share", "images", "mean area"):
            table.add_column(col, justify="left" if col == "class" else "right")
        for r in report.classes:
            table.add_row(str(r["index"]), r["name"], f"{r['share']:.2%}", str(r["images"]), f"{r['mean_area']:.2%}")
        o.print(table)
    for w in report.warnings:
        o.print(f"[yellow]warning[/]: {w}")
    s = report.suggestions
    if s and report.ok:
        args = [f"--img-size {s['img_size']}"]
        if s.get("ignore_index") not in (None, 255):
            args.append(f"--ignore-index {s['ignore_index']}")
        if s.get("use_class_weights"):
            args.append("--class-weights auto")
        o.print(f"suggested: segcli train {report.data} {' '.join(args)}")
        if s.get("class_weights"):
            o.print("auto class weights (--class-weights auto): " + ", ".join(fmt(w, 3) for w in s["class_weights"]))
    if report.ok:
        o.print("[green]ok[/]: no problems found")
