"""The Python API in a dozen lines: load a model, predict a few images, print class shares.

Usage: python examples/api_example.py [MODEL] IMAGE...   (MODEL: a .pt, run folder or .onnx;
leave it out and the first argument is an image: the newest run under runs/train/ is used)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

import segcli


def main(args: list[str]) -> None:
    first = Path(args[0])
    is_model = first.is_dir() or first.suffix.lower() in (".pt", ".onnx")
    model = segcli.load(first if is_model else None)  # None: the newest run's best.pt
    images = args[1:] if is_model else args
    print(model)
    for path in images:
        mask, probs = model.predict(path, probs=True)  # also takes a PIL image or an ndarray
        shares = np.bincount(mask.ravel(), minlength=len(model.classes)) / mask.size
        confidence = float(probs.max(0).mean())
        print(f"{path}: " + ", ".join(f"{name} {s:.1%}" for name, s in zip(model.classes, shares))
              + f" (mean confidence {confidence:.2f})")
    # arrays work as well: e.g. a frame from a video or a tile of a large image
    frame = np.asarray(Image.open(images[0]).convert("RGB"))
    assert (model.predict(frame) == model.predict(images[0])).mean() > 0.99


if __name__ == "__main__":
    if not sys.argv[1:]:
        sys.exit(__doc__)
    main(sys.argv[1:])
