"""Colours for masks: a fixed palette, colourised masks and overlays (numpy in, numpy out)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

_BASE = [
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
    (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0),
    (255, 215, 180), (0, 0, 128), (128, 128, 128),
]


def palette(colors: Optional[Sequence[Sequence[int]]] = None) -> np.ndarray:
    """(256, 3) uint8: the given class colours first (from classes.txt), then distinct
    defaults, then a deterministic spread; 255 (ignore) is white."""
    pal = np.zeros((256, 3), np.uint8)
    pal[: len(_BASE)] = _BASE
    rng = np.random.default_rng(0)
    pal[len(_BASE) :] = rng.integers(40, 256, (256 - len(_BASE), 3))
    pal[255] = (255, 255, 255)  # ignore
    if colors:
        pal[: len(colors)] = np.asarray(colors, np.uint8).reshape(-1, 3)
    return pal


def colorize(labels: np.ndarray, binary: bool, colors: Optional[Sequence[Sequence[int]]] = None) -> np.ndarray:
    """HxW labels to HxWx3 colours; binary foreground is white."""
    if binary:
        out = np.zeros(labels.shape + (3,), np.uint8)
        out[labels == 1] = 255
        out[labels == 255] = (128, 128, 128)
        return out
    return palette(colors)[labels]


def overlay(image: np.ndarray, labels: np.ndarray, binary: bool, alpha: float = 0.45,
            colors: Optional[Sequence[Sequence[int]]] = None, rows: int = 512) -> np.ndarray:
    """The image (HxWxC uint8/16) with the mask's colours blended over non-background pixels.

    Works through `rows` rows at a time so a huge image needs no full-size float copies.
    """
    pal = palette(colors).astype(np.float32)
    if binary:
        pal[1] = colors[1] if colors and len(colors) > 1 else (255, 40, 40)
    out = np.empty(labels.shape + (3,), np.uint8)
    for y in range(0, labels.shape[0], rows):
        img = image[y : y + rows].astype(np.float32)
        if image.dtype == np.uint16:
            img /= 257.0
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        lab = labels[y : y + rows]
        blend = (1 - alpha) * img + alpha * pal[lab]
        out[y : y + rows] = np.where((lab > 0)[..., None], blend, img).clip(0, 255).astype(np.uint8)
    return out


def to_display(image: np.ndarray) -> np.ndarray:
    """Any decoded image to HxWx3 uint8 for viewing."""
    img = image
    if img.dtype == np.uint16:
        img = (img / 257).astype(np.uint8)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return img
