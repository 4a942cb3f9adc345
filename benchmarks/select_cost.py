"""What `segcli select` costs over a large pool, against `segcli predict --quality` over the same images.

Generates N small images (segcli's synthetic shapes, --size pixels square, PNG), trains a model of
the default architecture for one epoch on a few of them (it carries a quality estimator and its
calibration, which is all the timing needs), then times whole commands, start-up included, in
the same run: `predict --quality -o OUT` (every mask and error map written: the way to rank a pool
without select), `select --count K` (the list only) and `select --count K -o DIR` (with the head
start), each `--reps` times (best kept).

    python benchmarks/select_cost.py                      # 10,000 images of 64x64: ~10 min on 2 cores
    python benchmarks/select_cost.py --images 200 --reps 1   # smoke run, ~1 min
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import segcli, segcli_cmd, wall  # noqa: E402


def make_pool(folder: Path, n: int, size: int) -> Path:
    """n distinct size x size RGB images: 64 synthetic scenes, each flipped, rotated and re-noised."""
    import numpy as np
    from PIL import Image

    from segcli.data.synthetic import make_pair

    rng = np.random.default_rng(0)
    scenes = [make_pair(rng, (size, size), 4, 3)[0] for _ in range(64)]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im = np.rot90(scenes[i % 64], (i // 64) % 4)
        noise = rng.integers(-8, 9, im.shape)
        Image.fromarray(np.clip(im.astype(np.int16) + noise, 0, 255).astype(np.uint8)).save(folder / f"p{i:06d}.png")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=64, help="Side of the generated images, pixels.")
    ap.add_argument("--count", type=int, default=100, help="select --count.")
    ap.add_argument("--model", help="A model to time instead of training one (it needs a quality estimator).")
    ap.add_argument("--reps", type=int, default=2, help="Repeats of each command (the best is kept).")
    ap.add_argument("--common", default="", help="Options for all three commands (e.g. --device cuda).")
    a = ap.parse_args()
    from segcli.data.synthetic import make_dataset

    work = Path(tempfile.mkdtemp(prefix="segcli-select-cost-"))
    pool = make_pool(work / "pool", a.images, a.size)
    model = a.model
    if model is None:
        data = make_dataset(work / "train", count=16, size=(a.size, a.size), classes=4)
        run = segcli(["train", data, "--epochs", "1", "--img-size", str(a.size), "--logger", "none"], work).strip()
        model = str(work / run / "weights" / "best.pt")
    common = a.common.split()
    commands = {
        "predict --quality -o OUT": lambda i: segcli_cmd("predict", pool, "--model", model, "--quality",
                                                        "-o", work / f"pred{i}", *common),
        f"select --count {a.count}": lambda i: segcli_cmd("select", pool, "--count", a.count, "--model", model,
                                                          *common),
        f"select --count {a.count} -o DIR": lambda i: segcli_cmd("select", pool, "--count", a.count, "--model",
                                                                 model, "-o", work / f"sel{i}", *common),
    }
    times = {}
    for name, cmd in commands.items():
        times[name] = min(wall(cmd(i), cwd=work) for i in range(a.reps))
        print(f"  {name}: {times[name]:.1f} s", flush=True)
    base = times["predict --quality -o OUT"]
    print(f"\n{a.images} images of {a.size}x{a.size}, model {model} (best of {a.reps}; whole commands)\n")
    print("| command | seconds | images/s | vs predict --quality |\n|---|---|---|---|")
    for name, t in times.items():
        print(f"| `{name}` | {t:.1f} | {a.images / t:.0f} | {t / base:.2f}x |")
    ok = all(t <= base for n, t in times.items() if n.startswith("select"))
    print(f"\ntarget: select costs at most what predict --quality costs: {'met' if ok else 'NOT met'}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
