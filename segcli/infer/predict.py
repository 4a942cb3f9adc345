"""Predict: sources (files, folders, globs, stdin) to mask files, optionally with overlays
and probabilities (`<stem>_probs.npy`, float16, C'xHxW: 1 foreground channel for a binary
model, K softmax channels otherwise).

A run streams (a few decoded images in memory whatever the number of inputs), writes every file
under a temporary name then renames it, and over an output folder it has written before does only
the work left (segcli.infer.resume).
"""

from __future__ import annotations

import glob
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
from PIL import Image

from segcli.data.discovery import list_images
from segcli.data.io import check_channels, image_size, is_image_file, read_image
from segcli.errors import DataError, UserError
from segcli.fileio import atomic_write, temp_path
from segcli.infer.predictor import Predictor
from segcli.infer.pipeline import Segmented, Writer, prefetch, segment_stream
from segcli.infer.resume import OutputFolder, Outputs, Record, error_path, overlay_path, probs_path
from segcli.visualize import overlay, palette

SKIPPED_QUEUE = 64  # results of skipped inputs that may wait in the writer's queue before it is drained


@dataclass
class PredictResult:
    input: Path
    output: Optional[Path] = None
    overlay: Optional[Path] = None
    probs: Optional[Path] = None
    seconds: float = 0.0
    fractions: Optional[list[float]] = field(default_factory=list)  # None: skipped, and not in the journal
    error: Optional[str] = None
    quality: Optional[float] = None  # with --quality: the estimated mIoU (binary: foreground Dice)
    error_map: Optional[Path] = None  # with --quality: <stem>_error.png
    skipped: bool = False  # done in the output folder by an earlier run (its outputs were kept)

    def to_json(self) -> dict[str, Any]:
        """The `--json` line (quality and error_map only for --quality runs)."""
        d = {"input": str(self.input), "output": _str(self.output), "overlay": _str(self.overlay),
             "probs": _str(self.probs), "seconds": self.seconds, "fractions": self.fractions, "error": self.error,
             "skipped": self.skipped}
        if self.error_map is not None or self.quality is not None:
            d.update(quality=self.quality, error_map=_str(self.error_map))
        return d


def _str(p: Optional[Path]) -> Optional[str]:
    return str(p) if p is not None else None


def collect_inputs(sources: list[str], stdin: Optional[Iterable[str]] = None) -> tuple[list[Path], list[str]]:
    """Expand sources into image paths (sorted per source, order kept, duplicates dropped: the same
    file twice, through another path or a symlink, is predicted once).

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
    real = RealPaths()
    seen: set[str] = set()
    unique = []
    for p in paths:
        key = real(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, problems


class RealPaths:
    """`os.path.realpath` of many files in few folders: each folder resolved once, a file itself only
    when it is a symlink (100,000 inputs: a fraction of a second rather than seconds)."""

    def __init__(self) -> None:
        self.folders: dict[str, str] = {}

    def __call__(self, p: Path) -> str:
        s = str(p)
        if os.path.islink(s):
            return os.path.realpath(s)
        parent, name = os.path.split(s)
        real = self.folders.get(parent)
        if real is None:
            real = self.folders[parent] = os.path.realpath(parent or ".")
        return os.path.join(real, name)


def plan_outputs(inputs: list[Path], out: Path, single_file: bool) -> dict[Path, Path]:
    """Where each input's mask goes: `out` itself for one input with a file name, else out/<stem>.png
    (a stem met again gets `_2`, `_3`, ... in input order)."""
    if single_file:
        plan = {inputs[0]: out}
    else:
        plan = {}
        used: set[str] = set()
        for p in inputs:
            stem, n = p.stem, 2
            while stem in used:  # same stem from two folders: keep both
                stem, n = f"{p.stem}_{n}", n + 1
            used.add(stem)
            plan[p] = out / f"{stem}.png"
    real = RealPaths()
    inputs_real = {real(p) for p in inputs}
    for dst in plan.values():
        for candidate in (dst, overlay_path(dst), probs_path(dst), error_path(dst)):
            if real(candidate) in inputs_real:
                raise UserError(f"{candidate}: output would overwrite an input; choose another -o")
    return plan


def mask_image(labels: np.ndarray, binary: bool, colors: Optional[list[list[int]]] = None) -> Image.Image:
    """Binary: 8-bit 0/255. Multi-class: 8-bit palette image whose values are the class indices.

    One builder for the mask file and the server's answer, so both carry the same bytes."""
    if binary:
        return Image.fromarray(np.multiply(labels, 255, dtype=np.uint8), "L")
    im = Image.fromarray(labels.astype(np.uint8, copy=False), "P")
    im.putpalette(palette(colors).ravel().tolist())
    return im


def save_mask(labels: np.ndarray, binary: bool, path: Path, colors: Optional[list[list[int]]] = None) -> None:
    """The mask as an image file, its format from the suffix (PNG by default; see `mask_image`),
    written under a temporary name and renamed: never seen half-written."""
    save_image(mask_image(labels, binary, colors), path)


def save_image(im: Image.Image, path: Path) -> None:
    """An image file written atomically (no fsync: see segcli.fileio.atomic_write)."""
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    atomic_write(path, lambda f: im.save(f, format=fmt), durable=False)


def class_fractions(labels: np.ndarray, num_classes: int) -> list[float]:
    """Each class's share of the mask's pixels (6 decimals), as `predict --json` reports them."""
    return (np.bincount(labels.ravel(), minlength=num_classes)[:num_classes] / labels.size).round(6).tolist()


def _pixels(path: Path) -> int:
    try:
        w, h = image_size(path)
        return w * h
    except DataError:
        return 0  # the read itself will report the problem


@dataclass
class PredictSummary:
    """What a run did: inputs written, skipped (done in OUT by an earlier run), failed (unreadable),
    and with `keep`, every input's result in input order."""

    written: int = 0
    skipped: int = 0
    failed: int = 0
    results: list[PredictResult] = field(default_factory=list)


class OutputWriter:
    """Writes one input's files (on a writer thread) and makes the results of skipped inputs."""

    def __init__(self, predictor: Predictor, plan: dict[Path, Path], outputs: Outputs,
                 done: dict[Path, Record]) -> None:
        self.info, self.plan, self.outputs, self.done = predictor.info, plan, outputs, done
        self.k = 2 if self.info.binary else self.info.num_classes

    def write(self, s: Segmented) -> PredictResult:
        """The outputs of one segmented input, each under a temporary name then renamed; the mask last."""
        path, info = s.item.key, self.info
        if s.item.error is not None:
            return PredictResult(path, error=s.item.error)
        t0 = time.perf_counter()
        dst = self.plan[path]
        res = PredictResult(path, dst, quality=s.seg.quality, fractions=class_fractions(s.labels, self.k))
        if s.seg.error is not None:
            res.error_map = error_path(dst)
            save_image(Image.fromarray(s.seg.error, "L"), res.error_map)
        if self.outputs.overlay:
            res.overlay = overlay_path(dst)
            save_image(Image.fromarray(overlay(s.item.value, s.labels, info.binary, colors=info.colors,
                                               bands=info.bands, suspect=s.seg.error)), res.overlay)
        if s.probs is not None:
            res.probs = probs_path(dst)
            if isinstance(s.probs, np.memmap):  # written in place under a temporary name
                s.probs.flush()
                os.replace(s.probs.filename, res.probs)
            else:
                atomic_write(res.probs, lambda f: np.save(f, s.probs), durable=False)
        save_mask(s.labels, info.binary, dst, info.colors)
        res.seconds = round(s.item.seconds + s.seconds + time.perf_counter() - t0, 4)
        return res

    def skipped(self, path: Path) -> PredictResult:
        """An input done by an earlier run: its files, and its estimate and fractions from the journal."""
        dst, rec, o = self.plan[path], self.done[path], self.outputs
        return PredictResult(path, dst, overlay_path(dst) if o.overlay else None, probs_path(dst) if o.probs else None,
                             fractions=rec.fractions, quality=rec.quality,
                             error_map=error_path(dst) if o.error_map else None, skipped=True)

    def memmap_for(self, path: Path) -> Callable[[tuple[int, ...]], np.ndarray]:
        """Where a tiled image's probabilities go: straight to disk, under a temporary name."""
        def alloc(shape: tuple[int, ...]) -> np.ndarray:
            return np.lib.format.open_memmap(temp_path(probs_path(self.plan[path])), mode="w+", dtype=np.float16,
                                             shape=shape)
        return alloc


def run_predict(
    predictor: Predictor, inputs: list[Path], plan: dict[Path, Path], outputs: Outputs = Outputs(),
    folder: Optional[OutputFolder] = None, on_result: Optional[Callable[[PredictResult], None]] = None,
    keep: bool = False, workers: int = 2,
) -> PredictSummary:
    """Predict every input not already done in `folder` (all of them without one), streaming: memory
    holds a few images whatever the number of inputs (and with `keep`, one small result each).

    Unreadable inputs become results with `error` set; the rest are written as `outputs` says (with
    `predictor.quality`: `<stem>_error.png` too, and the estimate in each result), each file under a
    temporary name then renamed, and journalled in `folder` once all are there. Decoding runs ahead and
    writing behind on threads (segcli.infer.pipeline); every input, skipped ones included (`skipped`),
    is reported to `on_result` in input order.
    """
    outputs = Outputs(outputs.overlay, outputs.probs, predictor.quality)
    if folder is not None and folder.left is None:
        folder.split(inputs, plan, outputs, predictor.quality, keep or on_result is not None)
    left, done = (folder.left, folder.done) if folder is not None and folder.left is not None else (set(inputs), {})
    files = OutputWriter(predictor, plan, outputs, done)
    summary = PredictSummary()
    writer = Writer(workers, max_pending=max(2, predictor.batch_size))

    def report(pairs: Iterable[tuple[Any, PredictResult]]) -> None:
        for _, res in pairs:
            if res.error:
                summary.failed += 1
            elif res.skipped:
                summary.skipped += 1
            else:
                summary.written += 1
                if folder is not None:
                    folder.record(res.input, res.quality, res.fractions or [])
            if keep:
                summary.results.append(res)
            if on_result:
                on_result(res)

    order = iter(inputs)

    def catch_up(until: Optional[Path]) -> None:
        """Report the skipped inputs before `until` (all that remain when None), in input order."""
        for p in order:
            if p == until:
                return
            writer.submit(lambda p=p: files.skipped(p), p)
            # a resumed run skips thousands in a row: drained as they go, the writer's queue stays short
            report(writer.ready(wait=len(writer.pending) >= SKIPPED_QUEUE))

    channels = predictor.info.in_channels

    def load(path: Path) -> np.ndarray:  # a wrong band count is that input's error, named, like a bad file
        return check_channels(read_image(path), channels, path)

    loaded = prefetch([p for p in inputs if p in left], load, _pixels, workers, max_ahead=2 * predictor.batch_size + 2)
    try:
        for s in segment_stream(predictor, loaded, lambda img: img, outputs.probs, files.memmap_for):
            catch_up(s.item.key)
            writer.submit(lambda s=s: files.write(s), s.item.key)
            report(writer.ready())
        catch_up(None)
    finally:
        report(writer.close())
        if folder is not None:
            folder.close()
    return summary
