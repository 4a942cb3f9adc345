"""`segcli predict`: images in, mask files out."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from segcli.cli.app import app
from segcli.cli.common import configurable
from segcli.cli import options as opt


@app.command()
@configurable
def predict(
    sources: list[str] = typer.Argument(..., help="Image files, folders, quoted globs, or - for paths on stdin."),
    model: Optional[str] = opt.MODEL,
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Mask file (one input) or folder; default runs/predict/NAME."),
    overlay: bool = typer.Option(False, "--overlay", help="Also write <stem>_overlay.png: the mask blended over the image."),
    bands: Optional[str] = typer.Option(None, "--bands", help="Bands the overlay shows, from 1: one (gray) or three (R,G,B), e.g. 3,2,1 (default: the model's, from training)."),
    save_probs: bool = typer.Option(False, "--save-probs", help="Also write <stem>_probs.npy: float16 probabilities (C, H, W)."),
    batch_size: int = opt.BATCH_SIZE,
    threshold: float = opt.THRESHOLD,
    tile: Optional[int] = opt.TILE,
    no_tile: bool = opt.NO_TILE,
    overlap: float = opt.OVERLAP,
    tta: bool = opt.TTA,
    device: str = opt.DEVICE,
    precision: str = opt.PRECISION,
    name: str = typer.Option("exp", help="Folder name under runs/predict/ when -o is not given."),
    json_out: bool = typer.Option(False, "--json", help="One JSON line per input on stdout."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: only the I-th (0-based) of N disjoint parts of the sorted inputs; under torchrun: RANK/WORLD_SIZE."),
    quality: bool = opt.QUALITY,
    sort_by: str = typer.Option("input", "--sort-by", help="Order of the --json lines: input (as given) | quality (worst estimated quality first; implies --quality)."),
    review: int = typer.Option(0, "--review", metavar="N", help="Copy the N worst masks (image, mask, overlay, error map) into OUT/review/ for a person to check (implies --quality)."),
) -> None:
    """Predict masks (8-bit 0/255 for binary, palette PNG of class indices otherwise)."""
    from segcli.console import err, info
    from segcli.errors import UserError
    from segcli.infer.predictor import check_options, configure, load_predictor, resolve_model
    from segcli.infer.predict import collect_inputs, plan_outputs, run_predict
    from segcli.ranks import local_device, shard as take_shard, shard_spec
    from segcli.runs import new_run_dir
    from segcli.visualize import parse_bands

    check_options(tile, no_tile, overlap, threshold, batch_size)
    quality = _wants_quality(quality, sort_by, review)
    if bands:
        parse_bands(bands)
    part = shard_spec(shard)
    inputs, problems = collect_inputs(sources)
    if not inputs:  # nothing to do: one line saying why
        raise UserError("; ".join(problems) if problems else "no input images; pass image files, folders, globs or - for stdin")
    for p in problems:
        err().print(f"error: {p}", markup=False)
    names_file = output is not None and Path(output).suffix.lower() in (".png", ".tif", ".tiff", ".bmp")
    if names_file and len(inputs) > 1 and not Path(output).is_dir():
        raise UserError(f"-o {output}: names one file but there are {len(inputs)} inputs; pass a folder")
    single = names_file and len(inputs) == 1
    # shards share one output folder; names are planned over all (sorted) inputs so parts never collide
    if part is not None:
        inputs = sorted(inputs, key=str)
    out = Path(output) if output else new_run_dir("runs/predict", name, exist_ok=part is not None)
    plan = plan_outputs(inputs, out, single)
    if part is not None:
        inputs = take_shard(inputs, *part)
        info(f"shard {part[0]}/{part[1]}: {len(inputs)} of {len(plan)} input(s)")
    predictor = load_predictor(resolve_model(model), local_device(device), precision)
    configure(predictor, tile, no_tile, overlap, tta, threshold, batch_size, quality)
    if bands:
        predictor.info = replace(predictor.info, bands=parse_bands(bands, predictor.info.in_channels))

    def report(res) -> None:
        if json_out:
            print(json.dumps(res.to_json()), flush=True)
        if res.error:
            err().print(f"error: {res.error}", markup=False)

    ordered = sort_by == "quality"  # results are held back, then reported worst first
    results = run_predict(predictor, inputs, plan, overlay, save_probs, None if ordered else report)
    if ordered:
        from segcli.infer.quality import worst_first

        for res in worst_first(results):
            report(res)
    failed = [r for r in results if r.error]
    info(f"{len(results) - len(failed)} mask(s) written to {out}")
    if quality:
        _quality_summary(results, predictor, out, review, single, part)
    if failed or problems:
        raise UserError(f"{len(failed) + len(problems)} input(s) could not be read (named above); the other masks were written")


def _wants_quality(quality: bool, sort_by: str, review: int) -> bool:
    """--quality, or implied by --sort-by quality / --review N (whose values are checked here)."""
    from segcli.errors import UserError

    if sort_by not in ("input", "quality"):
        raise UserError(f"--sort-by {sort_by}: expected input or quality")
    if review < 0:
        raise UserError(f"--review {review}: expected a number of images, 0 or more")
    return quality or sort_by == "quality" or review > 0


def _quality_summary(results, predictor, out: Path, review: int, single: bool, part) -> None:
    """The estimated quality in the summary (stderr), and the review folder."""
    from segcli.console import fmt, info
    from segcli.infer.quality import worst_first, write_review

    scored = [r for r in worst_first(results) if r.quality is not None]
    if not scored:
        return
    cal = predictor.calibration
    what = f"estimated {cal.target}" if cal is not None else "estimated quality"
    if cal is not None and not cal.fitted_on.get("calibrated", True):
        what += " (uncalibrated: the run that wrote this model did not finish)"
    mean = sum(r.quality for r in scored) / len(scored)
    info(f"{what}: mean {fmt(mean)}, worst {fmt(scored[0].quality)} ({scored[0].input.name}); error maps: <stem>_error.png")
    if review:
        folder = (out.parent if single else out) / "review"
        if part is not None:
            folder = folder / f"shard{part[0]}"
        listed = write_review(results, review, folder, predictor.info)
        info(f"{len(listed)} image(s) to review in {folder} (worst first)")
