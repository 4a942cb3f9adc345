"""`segcli predict`: images in, mask files out."""

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
def predict(
    sources: list[str] = typer.Argument(..., help="Image files, folders, quoted globs, or - for paths on stdin."),
    model: Optional[str] = opt.MODEL,
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Mask file (one input) or folder; default runs/predict/NAME."),
    overlay: bool = typer.Option(False, "--overlay", help="Also write <stem>_overlay.png: the mask blended over the image."),
    bands: Optional[str] = typer.Option(None, "--bands", help="Bands the overlay shows, from 1: one (gray) or three (R,G,B), e.g. 3,2,1 (default: the model's, from training)."),
    save_probs: bool = typer.Option(False, "--save-probs", help="Also write <stem>_probs.npy: float16 probabilities (C, H, W)."),
    batch_size: int = opt.BATCH_SIZE,
    threshold: Optional[float] = opt.THRESHOLD,
    tile: Optional[int] = opt.TILE,
    no_tile: bool = opt.NO_TILE,
    overlap: float = opt.OVERLAP,
    tta: bool = opt.TTA,
    device: str = opt.DEVICE,
    precision: str = opt.PRECISION,
    name: str = typer.Option("exp", help="Folder name under runs/predict/ when -o is not given."),
    json_out: bool = typer.Option(False, "--json", help="One JSON line per input on stdout, in input order (on a rerun, inputs already done too, with \"skipped\": true)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: only the I-th (0-based) of N disjoint parts of the sorted inputs; under torchrun: RANK/WORLD_SIZE."),
    quality: bool = opt.QUALITY,
    sort_by: str = typer.Option("input", "--sort-by", help="Order of the --json lines: input (as given) | quality (worst estimated quality first; implies --quality)."),
    review: int = typer.Option(0, "--review", metavar="N", help="Copy the N worst masks (image, mask, overlay, error map) into OUT/review/ for a person to check (implies --quality)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo every input, replacing what -o holds (a rerun otherwise does only the work left, and refuses an -o written by another model or other settings)."),
) -> None:
    """Predict masks (8-bit 0/255 for binary, palette PNG of class indices otherwise).

    Streams any number of inputs; run again with the same -o, it does only the work left."""
    from segcli.console import err, info
    from segcli.errors import UserError
    from segcli.infer.options import InferenceOptions
    from segcli.infer.predictor import load_predictor, resolve_model
    from segcli.infer.predict import collect_inputs, plan_outputs
    from segcli.infer.resume import OutputFolder, Outputs
    from segcli.ranks import local_device, shard as take_shard, shard_spec
    from segcli.runs import new_run_dir

    quality = _wants_quality(quality, sort_by, review)
    options = InferenceOptions.from_flags(tile, no_tile, device=local_device(device), precision=precision,
                                          overlap=overlap, tta=tta, threshold=threshold, batch_size=batch_size,
                                          quality=quality, bands=bands)
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
    path = resolve_model(model)
    folder = None if single else OutputFolder(out, path, options.settings(), part, overwrite)
    if folder is not None:
        folder.claim()
        folder.split(inputs, plan, Outputs(overlay, save_probs, quality), quality, json_out or quality)
        if folder.done:
            info(f"resuming: {len(folder.done)} of {len(inputs)} input(s) already done in {out}")
    predictor = load_predictor(path, options)
    todo = len(folder.left) if folder is not None and folder.left is not None else len(inputs)
    info(f"model {path} loaded; {todo} input(s) to predict")
    ordered = sort_by == "quality"  # results are held back, then reported worst first
    summary = _run(predictor, inputs, plan, Outputs(overlay, save_probs), folder, json_out, ordered, quality)
    info(f"{summary.written} mask(s) written to {out}" + (f", {summary.skipped} already there" if summary.skipped else ""))
    if quality:
        _quality_summary(summary.results, predictor, out, review, single, part)
    if summary.failed or problems:
        raise UserError(f"{summary.failed + len(problems)} input(s) could not be read (named above); the other masks were written")


def _run(predictor, inputs, plan, outputs, folder, json_out: bool, ordered: bool, quality: bool):
    """run_predict with the progress bar, --json lines (in input order, or worst first), error lines."""
    from segcli.console import PredictProgress, err
    from segcli.infer.predict import run_predict

    def report(res) -> None:
        if json_out:
            print(json.dumps(res.to_json()), flush=True)
        if res.error:
            err().print(f"error: {res.error}", markup=False)

    def each(res) -> None:
        if not res.skipped:
            progress.advance()
        if not ordered:
            report(res)

    progress = PredictProgress(len(folder.left) if folder is not None and folder.left is not None else len(inputs))
    try:
        summary = run_predict(predictor, inputs, plan, outputs, folder, each, keep=quality)
    finally:
        progress.close()
    if ordered:
        from segcli.infer.quality import worst_first

        for res in worst_first(summary.results):
            report(res)
    return summary


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
