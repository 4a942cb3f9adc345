"""Small generated datasets (shapes on noisy backgrounds) for tests, demos and examples.

`python -m segcli.data.synthetic OUT [--classes K] [--count N] [--size S] [--split]`
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def make_pair(rng: np.random.Generator, size: tuple[int, int], classes: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """One image with a few filled shapes; the mask holds each shape's class (0 = background)."""
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w), np.uint8)
    base = rng.uniform(40, 90)
    image = np.full((h, w, channels), base, np.float32)
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(1, classes))
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        r = rng.uniform(0.1, 0.25) * min(h, w)
        region = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) if k % 2 else ((abs(yy - cy) < r) & (abs(xx - cx) < r))
        mask[region] = k
        colour = np.array([90 + 150 * ((k * 37 + c * 71) % 100) / 100 for c in range(channels)], np.float32)
        image[region] = colour
    image += rng.normal(0, 12, image.shape)
    return image.clip(0, 255).astype(np.uint8), mask


def make_dataset(root: str | Path, count: int = 12, size: tuple[int, int] = (64, 64), classes: int = 2,
                 channels: int = 3, split: bool = False, seed: int = 0, classes_file: bool = False) -> Path:
    """Write DATA/images + DATA/masks (or train/ and val/ with `split`). Binary masks are 0/255."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    parts = [("train", count - max(2, count // 4)), ("val", max(2, count // 4))] if split else [("", count)]
    n = 0
    for sub, k in parts:
        d = root / sub if sub else root
        (d / "images").mkdir(parents=True, exist_ok=True)
        (d / "masks").mkdir(parents=True, exist_ok=True)
        for _ in range(k):
            image, mask = make_pair(rng, size, classes, channels)
            if classes == 2:
                mask = (mask > 0).astype(np.uint8) * 255
            Image.fromarray(image[..., 0] if channels == 1 else image).save(d / "images" / f"img{n:03d}.png")
            Image.fromarray(mask).save(d / "masks" / f"img{n:03d}.png")
            n += 1
    if classes_file:
        names = ["background"] + [f"shape{i}" for i in range(1, classes)]
        (root / "classes.txt").write_text("\n".join(names) + "\n")
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--classes", type=int, default=2, help="2 = binary (0/255 masks)")
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--split", action="store_true", help="train/ + val/ layout")
    a = ap.parse_args()
    make_dataset(a.out, a.count, (a.size, a.size), a.classes, a.channels, a.split, classes_file=a.classes > 2)
    print(a.out)


if __name__ == "__main__":
    main()
