"""Peak memory of `segcli predict` on one 8000x8000 RGB image (tiled sliding window).

    python benchmarks/large_image.py [--data-root /work/shared/data] [--size 8000] [--keep DIR]

Builds the image as a mosaic of ISBI images (RGB), a default-architecture checkpoint trained
at 256-pixel patches (untrained weights: memory and speed do not depend on them), then runs
`/usr/bin/time -v python -m segcli predict IMAGE -o mask.png --overlay --save-probs` and
prints the peak resident memory, the wall time and a check of the written files.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import data_root, make_checkpoint, run, segcli_cmd  # noqa: E402


def make_image(path: Path, size: int, root: Path) -> None:
    import numpy as np
    from PIL import Image

    tiles = [np.asarray(Image.open(p)) for p in sorted((root / "isbi2012-membrane" / "images").glob("*.png"))]
    n = -(-size // 512)
    rows = [np.concatenate([tiles[(r * n + c) % len(tiles)] for c in range(n)], axis=1) for r in range(n)]
    gray = np.concatenate(rows, axis=0)[:size, :size]
    rgb = np.stack([gray, gray[:, ::-1], 255 - gray], axis=-1)  # three different channels
    Image.fromarray(np.ascontiguousarray(rgb)).save(path, compress_level=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--size", type=int, default=8000)
    ap.add_argument("--keep", default=None, help="work in this folder and keep the outputs")
    ap.add_argument("extra", nargs="*", help="more predict options, e.g. -- --tta")
    a = ap.parse_args()
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="segcli-large-"))
    work.mkdir(parents=True, exist_ok=True)
    image, model = work / f"large{a.size}.png", work / "model.pt"
    if not image.exists():
        make_image(image, a.size, data_root(a.data_root))
    make_checkpoint(model, in_channels=3)
    cmd = ["/usr/bin/time", "-v", *segcli_cmd("-q", "predict", image, "--model", model, "-o", work / "mask.png",
                                              "--overlay", "--save-probs", *a.extra)]
    print("$", " ".join(cmd), flush=True)
    r = run(cmd)
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", r.stderr).group(1)
    import numpy as np
    from PIL import Image

    mask = Image.open(work / "mask.png")
    probs = np.load(work / "mask_probs.npy", mmap_mode="r")
    print(f"image {a.size}x{a.size} RGB: mask {mask.size} {mask.mode}, overlay {Image.open(work / 'mask_overlay.png').size}, "
          f"probs {probs.shape} {probs.dtype}")
    print(f"peak RSS (/usr/bin/time -v, Maximum resident set size): {peak_kb / 1024**2:.2f} GiB "
          f"({peak_kb} kB; target < 3 GB); wall {wall}")


if __name__ == "__main__":
    main()
