"""Start-up and shell-batch timings: what a user waits for at the prompt or in a shell loop.

    python benchmarks/startup.py [--data-root ../shared/data] [--repeat 5]

Each command runs as a fresh process (`/usr/bin/time`-style wall time, median of --repeat):
`segcli --help`, `segcli train --help`, an argument error, a one-image 512x512 predict with an
exported .onnx model (ONNX Runtime, no torch import) and with the .pt checkpoint; then 10 images
as one call vs 10 calls of one image each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import SEGCLI, data_root, make_checkpoint, wall  # noqa: E402


def median(cmd: list[str], n: int, ok: tuple[int, ...] = (0,)) -> float:
    return statistics.median(wall(cmd, ok) for _ in range(n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    images = sorted((data_root(a.data_root) / "isbi2012-membrane" / "images").glob("*.png"), key=lambda p: int(p.stem))
    with tempfile.TemporaryDirectory(prefix="segcli-startup-") as tmp:
        t = Path(tmp)
        pt = t / "model.pt"
        make_checkpoint(pt, in_channels=1)
        wall([*SEGCLI, "export", "--model", str(pt), "-o", str(t / "model.onnx")])
        onnx = str(t / "model.onnx")
        rows = [
            ("segcli --help", median([*SEGCLI, "--help"], a.repeat)),
            ("segcli train --help", median([*SEGCLI, "train", "--help"], a.repeat)),
            ("segcli train data --epochs x (argument error)", median([*SEGCLI, "train", "data", "--epochs", "x"], a.repeat, (2,))),
            ("predict 1 image, .onnx (ONNX Runtime)", median([*SEGCLI, "predict", "--model", onnx, str(images[0]), "-o", str(t / "a.png")], a.repeat)),
            ("predict 1 image, .pt (PyTorch)", median([*SEGCLI, "predict", "--model", str(pt), str(images[0]), "-o", str(t / "b.png")], a.repeat)),
        ]
        ten = [str(p) for p in images[:10]]
        one_call = wall([*SEGCLI, "predict", "--model", onnx, *ten, "-o", str(t / "many")])
        per_file = sum(wall([*SEGCLI, "predict", "--model", onnx, p, "-o", str(t / f"m{i}.png")]) for i, p in enumerate(ten))
        rows += [("10 images, one call, .onnx", one_call), ("10 images, 10 calls, .onnx", per_file)]
    print(f"| command (median of {a.repeat}; batch rows: one run) | seconds |")
    print("|---|---|")
    for name, s in rows:
        print(f"| {name} | {s:.3f} |")
    print(f"| one call vs one call per file | {per_file / one_call:.1f}x faster |")


if __name__ == "__main__":
    main()
