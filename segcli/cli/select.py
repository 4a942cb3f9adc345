"""`segcli select`: which unlabelled images to label next."""

from __future__ import annotations

import json
from typing import Optional

import typer

from segcli.cli.app import app
from segcli.cli.common import configurable
from segcli.cli import options as opt


@app.command()
@configurable
def select(
    sources: list[str] = typer.Argument(..., help="The unlabelled pool: image files, folders, quoted globs, or - for paths on stdin."),
    count: int = typer.Option(..., "--count", "-n", help="How many images to pick."),
    model: Optional[str] = opt.MODEL,
    labeled: Optional[str] = typer.Option(None, "--labeled", metavar="DATA", help="A dataset folder: pool images that already have a mask there (same file stem) are skipped."),
    strategy: str = typer.Option("quality", "--strategy", help="quality (lowest estimated quality first; models without an estimator: entropy) | entropy (highest mean entropy first) | random."),
    diversity: bool = typer.Option(True, "--diversity/--no-diversity", help="Keep the picks diverse: not N frames of one video (ignored by random)."),
    spread: str = typer.Option("pool", "--spread", help="How diversity spreads the picks: pool (in proportion to the pool: each pick is the most promising image of a part of similar images holding its share, so a rare kind of image gets its share and no more) | apart (each pick as unlike the earlier ones as possible, among the 4N most promising)."),
    seed: int = typer.Option(0, "--seed", help="Seed of --strategy random and of the parts of --spread pool."),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="DIR", help="A new folder receiving images/ (copies of the picks), masks/ (the model's masks: a head start for the annotator), error_maps/, list.txt and selection.json."),
    fmt: str = typer.Option("png", "--format", help="The head-start masks: png (masks/, segcli's layout) | coco (annotations/instances_default.json, polygons for CVAT / Label Studio)."),
    json_out: bool = typer.Option(False, "--json", help="One JSON line per pick on stdout: its estimate and why it was picked."),
    device: str = opt.DEVICE,
    batch_size: int = opt.BATCH_SIZE,
    precision: str = opt.PRECISION,
    threshold: Optional[float] = opt.THRESHOLD,
) -> None:
    """Pick the unlabelled images whose labels would teach the model most (a list on stdout)."""
    from segcli.console import err, info
    from segcli.errors import UserError
    from segcli.infer.predict import collect_inputs
    from segcli.infer.options import InferenceOptions
    from segcli.infer.predictor import load_predictor, resolve_model
    from segcli.infer.select import SelectConfig, run_select
    from segcli.ranks import local_device

    cfg = SelectConfig(count, strategy, diversity, seed, labeled, output, fmt, spread)
    cfg.check()
    options = InferenceOptions(device=local_device(device), precision=precision, threshold=threshold,
                               batch_size=batch_size)  # tiles: automatic, as predict
    options.check()
    inputs, problems = collect_inputs(sources)
    if not inputs:
        raise UserError("; ".join(problems) if problems else "no pool images; pass image files, folders, globs or - for stdin")
    for p in problems:
        err().print(f"error: {p}", markup=False)

    def load():
        return load_predictor(resolve_model(model), options)

    sel = run_select(cfg, inputs, load, lambda path, e: err().print(f"error: {e}", markup=False))
    if sel.note:
        info(f"note: {sel.note}")
    for entry in sel.picked:
        print(json.dumps(entry) if json_out else entry["image"], flush=True)
    _summary(sel, cfg)
    if sel.unreadable or problems:
        raise UserError(f"{len(sel.unreadable) + len(problems)} pool image(s) could not be read (named above); "
                        "the rest were ranked")


def _summary(sel, cfg) -> None:
    from segcli.console import info

    by = {"quality": f"estimated {sel.target}, lowest first", "entropy": "mean entropy, highest first",
          "random": f"random draw (seed {cfg.seed})"}[sel.strategy]
    how = {"pool": "spread over the pool", "apart": "kept apart"}[cfg.spread]
    spread = f", {how}" if cfg.diversity and sel.strategy != "random" else ""
    skipped = f"; {sel.skipped} already labelled in {cfg.labeled} skipped" if cfg.labeled else ""
    timing = f" in {sel.seconds:.1f} s" if sel.seconds else ""
    info(f"picked {len(sel.picked)} of {sel.pool} pool image(s) by {by}{spread}{timing}{skipped}")
    if cfg.output:
        what = "annotations/instances_default.json" if cfg.format == "coco" else "masks/"
        info(f"head start in {cfg.output}: images/, {what} (the model's masks, to correct), list.txt, selection.json")
