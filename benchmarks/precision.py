"""bf16 autocast vs fp32 at an equal number of epochs on ISBI: does bf16 cost accuracy?

(`quality.py --fp32` compares them at an equal wall-clock budget instead, where bf16's speed
buys it more epochs.) Same seed, same data order; only the precision differs.

    python benchmarks/precision.py [--epochs 25] [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import data_root, isbi_split, run_segcli  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root")
    ap.add_argument("--epochs", type=int, default=25)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="segcli-precision-"))
    data = isbi_split(data_root(a.data_root), work / "isbi")
    print(f"ISBI, {a.epochs} epochs each, seed 0, test images 24-29\n")
    print("| precision | test mIoU | membrane Dice | training seconds |")
    print("|---|---|---|---|")
    res = {}
    for prec in ("bf16", "32"):
        r = run_segcli(prec, data, f"{a.epochs}ep", ["--precision", prec], work)
        with open(Path(work, r["run"], "metrics.csv")) as f:
            secs = sum(float(row["train_seconds"]) for row in csv.DictReader(f))
        res[prec] = r["mIoU"]
        print(f"| {prec} | {r['mIoU']:.4f} | {r['per_class'][0]['dice']:.4f} | {secs:.0f} |", flush=True)
    print(f"\nbf16 - fp32 test mIoU: {res['bf16'] - res['32']:+.4f} (target: within 0.005)")


if __name__ == "__main__":
    main()
