"""Predict: sources (files, folders, globs, stdin) to mask files, optionally with overlays
and probabilities (`<stem>_probs.npy`, float16, C'xHxW: 1 foreground channel for a binary
model, K softmax channels otherwise)."""

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
from segcli.data.io import check_channels, image_size, is_image_file, read_image
from segcli.errors import DataError, UserError
from segcli.infer.predictor import Predictor
from segcli.infer.pipeline import Segmented, Writer, prefetch, segment_stream
from segcli.visualize import overlay, palette


@dataclass
class PredictResult:
    input: Path
    output: Optional[Path] = None
    overlay: Optional[Path] = None
    probs: Optional[Path] = None
    seconds: float = 0.0
    fractions: list[float] = field(default_factory=list)
    error: Optional[str] = None
    quality: Optional[float] = None  # with --quality: the estimated mIoU (binary: foreground Dice)
    error_map: Optional[Path] = None  # with --quality: <stem>_error.png

    def to_json(self) -> dict[str, Any]:
        """The `--json` line (quality and error_map only for --quality runs)."""
        d = {"input": str(self.input), "output": _str(self.output), "overlay": _str(self.overlay),
             "probs": _str(self.probs), "seconds": self.seconds, "fractions": self.fractions, "error": self.error}
        if self.error_map is not None or self.quality is not None:
            d.update(quality=self.quality, error_map=_str(self.error_map))
        return d


def _str(p: Optional[Path]) -> Optional[str]:
    return str(p) if p is not None else None


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
    inputs_resolved = {p.resolve() for p in inputs}
    for dst in plan.values():
        for candidate in (dst, overlay_path(dst), probs_path(dst), error_path(dst)):
            if candidate.resolve() in inputs_resolved:
                raise UserError(f"{candidate}: output would overwrite an input; choose another -o")
    return plan


def overlay_path(mask: Path) -> Path:
    return mask.with_name(mask.stem + "_overlay.png")


def probs_path(mask: Path) -> Path:
    return mask.with_name(mask.stem + "_probs.npy")


def error_path(mask: Path) -> Path:
    return mask.with_name(mask.stem + "_error.png")


def mask_image(labels: np.ndarray, binary: bool, colors: Optional[list[list[int]]] = None) -> Image.Image:
    """Binary: 8-bit 0/255. Multi-class: 8-bit palette image whose values are the class indices.

    One builder for the mask file and the server's answer, so both carry the same bytes."""
    if binary:
        return Image.fromarray(np.multiply(labels, 255, dtype=np.uint8), "L")
    im = Image.fromarray(labels.astype(np.uint8, copy=False), "P")
    im.putpalette(palette(colors).ravel().tolist())
    return im


def save_mask(labels: np.ndarray, binary: bool, path: Path, colors: Optional[list[list[int]]] = None) -> None:
    """The mask as an image file, its format from the suffix (PNG by default; see `mask_image`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mask_image(labels, binary, colors).save(path)


def class_fractions(labels: np.ndarray, num_classes: int) -> list[float]:
    """Each class's share of the mask's pixels (6 decimals), as `predict --json` reports them."""
    return (np.bincount(labels.ravel(), minlength=num_classes)[:num_classes] / labels.size).round(6).tolist()


def _pixels(path: Path) -> int:
    try:
        w, h = image_size(path)
        return w * h
    except DataError:
        return 0  # the read itself will report the problem


def run_predict(
    predictor: Predictor, inputs: list[Path], plan: dict[Path, Path], with_overlay: bool = False,
    save_probs: bool = False, on_result: Optional[Callable[[PredictResult], None]] = None,
    workers: int = 2,
) -> list[PredictResult]:
    """Predict every input; unreadable inputs become results with `error` set, the rest are written
    (with `predictor.quality`: `<stem>_error.png` too, and the estimate in each result).

    Decoding runs ahead and writing runs behind on threads (see segcli.infer.pipeline); results
    are reported in input order.
    """
    info = predictor.info
    k = 2 if info.binary else info.num_classes
    results: list[PredictResult] = []
    writer = Writer(workers, max_pending=max(2, predictor.batch_size))

    def write(s: Segmented) -> PredictResult:
        path = s.item.key
        if s.item.error is not None:
            return PredictResult(path, error=s.item.error)
        t0 = time.perf_counter()
        dst = plan[path]
        save_mask(s.labels, info.binary, dst, info.colors)
        res = PredictResult(path, dst, quality=s.seg.quality)
        if s.seg.error is not None:
            res.error_map = error_path(dst)
            Image.fromarray(s.seg.error, "L").save(res.error_map)
        if with_overlay:
            res.overlay = overlay_path(dst)
            Image.fromarray(overlay(s.item.value, s.labels, info.binary, colors=info.colors, bands=info.bands,
                                    suspect=s.seg.error)).save(res.overlay)
        if s.probs is not None:
            res.probs = probs_path(dst)
            if isinstance(s.probs, np.memmap):
                s.probs.flush()
            else:
                np.save(res.probs, s.probs)
        res.fractions = class_fractions(s.labels, k)
        res.seconds = round(s.item.seconds + s.seconds + time.perf_counter() - t0, 4)
        return res

    def memmap_for(path: Path) -> Callable[[tuple[int, ...]], np.ndarray]:
        def alloc(shape: tuple[int, ...]) -> np.ndarray:  # a tiled image's probabilities go straight to disk
            dst = probs_path(plan[path])
            dst.parent.mkdir(parents=True, exist_ok=True)
            return np.lib.format.open_memmap(dst, mode="w+", dtype=np.float16, shape=shape)
        return alloc

    def report(pairs: Iterable[tuple[Any, PredictResult]]) -> None:
        for _, res in pairs:
            results.append(res)
            if on_result:
                on_result(res)

    def load(path: Path) -> np.ndarray:  # a wrong band count is that input's error, named, like a bad file
        return check_channels(read_image(path), info.in_channels, path)

    loaded = prefetch(inputs, load, _pixels, workers, max_ahead=2 * predictor.batch_size + 2)
    try:
        for s in segment_stream(predictor, loaded, lambda img: img, save_probs, memmap_for):
            writer.submit(lambda s=s: write(s), s.item.key)
            report(writer.ready())
    finally:
        report(writer.close())
    return results
