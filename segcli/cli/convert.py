"""`segcli convert`: write a COCO / VOC / Cityscapes (or plain) dataset in segcli's plain layout."""

from __future__ import annotations

from typing import Optional

import typer

from segcli.cli.app import app
from segcli.cli.common import apply_quiet, quiet_option


@app.command()
def convert(
    src: str = typer.Argument(..., metavar="SRC", help="Dataset folder: COCO (annotations/*.json), Pascal VOC, Cityscapes or plain."),
    dst: str = typer.Argument(..., metavar="DST", help="New (or empty) folder for images/ + masks/ + classes.txt."),
    quiet: bool = quiet_option(),
) -> None:
    """Write a dataset as images/ + masks/ + classes.txt: the masks segcli learns from, to inspect or edit."""
    from segcli.console import info, out
    from segcli.data.convert import convert as run_convert
    from segcli.data.formats import NAMES

    apply_quiet(quiet)
    result = run_convert(src, dst)
    counts = ", ".join(f"{n} {k}" for k, n in result.counts.items())
    classes: Optional[str] = ", ".join(result.classes) if result.classes else None
    info(f"{src}: {NAMES.get(result.format, 'plain')} dataset -> {dst} ({result.layout} layout: {counts})"
         + (f"; classes: {classes}" if classes else ""))
    out().print(str(result.dst))
