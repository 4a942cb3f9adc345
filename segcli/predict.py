"""Predict: sources (files, folders, globs, stdin) to mask files, optionally with overlays."""

from __future__ import annotations

import glob
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
from PIL import Image

from segcli.data.discovery import list_images
from segcli.data.io import is_image_file, read_image
from segcli.errors import DataError, UserError
from segcli.inference import Predictor
from segcli.visualize import overlay, palette


@dataclass
class PredictResult:
    input: Path
    output: Optional[Path] = None
    overlay: Optional[Path] = None
    seconds: float = 0.0
    fractions: list[float] = field(default_factory=list)
    error: Optional[str] = None


def collect_inputs(sources: list[str], stdin: Optional[Iterable[str]] = None) -> tuple[list[Path], list[str]]:
    """Expand sources into image paths (sorted per source, order kept, duplicates dropped).

    Returns the paths and one message per source that named nothing.
    """
    paths: list[Path] = []
    problems: list[str] = []
    for src in sources:
        if src == "-":
            lines = [ln.strip() for ln in (stdin if stdin is not None else sys.stdin)]
            found = [Path(ln) for ln in lines if ln]
            if not found:
                problems.append("-: no paths on standard input")
            paths += found
        elif Path(src).is_dir():
            found = list_images(Path(src))
            if not found:
                problems.append(f"{src}: folder holds no images (png, jpg, tif, bmp, webp)")
            paths += found
        elif any(c in src for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(src, recursive=True) if is_image_file(Path(p)))
            if not found:
                problems.append(f"{src}: pattern matches no images")
            paths += found
        elif not Path(src).exists():
            problems.append(f"{src}: file not found")
        else:
            paths.append(Path(src))
    seen: set[Path] = set()
    unique = []
    for p in paths:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, problems


def plan_outputs(inputs: list[Path], out: Path, single_file: bool) -> dict[Path, Path]:
    """Where each input's mask goes: `out` itself for one input with a file name, else out/<stem>.png."""
    plan: dict[Path, Path] = {inputs[0]: out} if single_file else {}
    used: set[str] = set()
    for p in inputs if not single_file else []:
        stem, n = p.stem, 2
        while stem in used:  # same stem from two folders: keep both
            stem, n = f"{p.stem}_{n}", n + 1
        used.add(stem)
        plan[p] = out / f"{stem}.png"
    inputs_resolved = {p.resolve() for p in inputs}
    for dst in plan.values():
        for candidate in (dst, dst.with_name(dst.stem + "_overlay.png")):
            if candidate.resolve() in inputs_resolved:
                raise UserError(f"{candidate}: output would overwrite an input; choose another -o")
    return plan


def save_mask(labels: np.ndarray, binary: bool, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if binary:
        Image.fromarray((labels * 255).astype(np.uint8), "L").save(path)
    else:
        im = Image.fromarray(labels.astype(np.uint8), "P")
        im.putpalette(palette().ravel().tolist())
        im.save(path)


def run_predict(
    predictor: Predictor, inputs: list[Path], plan: dict[Path, Path], with_overlay: bool = False,
    batch_size: int = 4, on_result: Optional[Callable[[PredictResult], None]] = None,
) -> list[PredictResult]:
    """Predict every input; unreadable inputs become results with `error` set, the rest are written."""
    results: list[PredictResult] = []
    pending: list[tuple[Path, np.ndarray, float]] = []

    def flush() -> None:
        if not pending:
            return
        probs = predictor.probs([predictor.preprocess(img) for _, img, _ in pending])
        for (path, img, t0), p in zip(pending, probs):
            labels = predictor.labels(p)
            dst = plan[path]
            save_mask(labels, predictor.info.binary, dst)
            res = PredictResult(path, dst)
            if with_overlay:
                res.overlay = dst.with_name(dst.stem + "_overlay.png")
                Image.fromarray(overlay(img, labels, predictor.info.binary)).save(res.overlay)
            k = 2 if predictor.info.binary else predictor.info.num_classes
            res.fractions = (np.bincount(labels.ravel(), minlength=k)[:k] / labels.size).round(6).tolist()
            res.seconds = round(time.perf_counter() - t0, 4)
            results.append(res)
            if on_result:
                on_result(res)
        pending.clear()

    for path in inputs:
        t0 = time.perf_counter()
        try:
            img = read_image(path)
        except DataError as e:
            res = PredictResult(path, error=str(e))
            results.append(res)
            if on_result:
                on_result(res)
            continue
        if pending and (img.shape[:2] != pending[0][1].shape[:2] or len(pending) >= batch_size):
            flush()
        pending.append((path, img, t0))
    flush()
    return results


def summarize(results: list[PredictResult]) -> dict[str, Any]:
    ok = [r for r in results if r.error is None]
    return {"written": len(ok), "failed": len(results) - len(ok)}
