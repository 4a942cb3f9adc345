"""What makes the adversarial term pay: a grid of GAN settings on ISBI at an equal epoch count.

Every variant trains on ISBI 0-19 (selection on 20-23) for the same number of epochs and
seeds, and is scored on the held-out test images 24-29. Equal epochs isolate the effect of
each setting on quality; what a setting costs in time shows in the `train s` column (sum of
the epochs' training seconds; on a GPU, with several runs sharing it, compare only roughly).

    python benchmarks/gan_sweep.py --device cuda --jobs 8            # a GPU machine: ~3 min
    python benchmarks/gan_sweep.py --only none,default --epochs 2    # smoke run on the CPU
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import CommandFailed, data_root, isbi_split, segcli  # noqa: E402

VARIANTS: dict[str, list[str]] = {
    "none": ["--gan", "none"],
    "default": [],
    "patch D width 32": ["--disc-channels", "32"],
    "D width 32 + every 2nd step": ["--disc-channels", "32", "--d-every", "2"],
    "adv weight 0.05": ["--adv-weight", "0.05"],
    "adv weight 0.001": ["--adv-weight", "0.001"],
    "adv warm-up 10 epochs": ["--adv-warmup", "10"],
    "vanilla (BCE)": ["--gan", "vanilla"],
    "hinge": ["--gan", "hinge"],
    "global D": ["--discriminator", "global"],
    "pixel D": ["--discriminator", "pixel"],
    "lr D 1e-3 (TTUR x5)": ["--lr-d", "1e-3"],
    "lr D 5e-5": ["--lr-d", "5e-5"],
    "D every 2nd step": ["--d-every", "2"],
}


def run(name: str, flags: list[str], seed: int, data: Path, work: Path, a: argparse.Namespace) -> dict:
    tag = f"{abs(hash(name)) % 10**8}_{seed}"
    run_dir = work / tag
    try:
        segcli(["-q", "train", data, "--epochs", a.epochs, "--seed", seed, "--device", a.device, "--workers", a.workers,
                "--project", work, "--name", tag, "--exist-ok", *flags])
        res = json.loads(segcli(["-q", "evaluate", data / "test", "--model", run_dir / "weights/best.pt",
                                 "--device", a.device, "--json"]))
    except CommandFailed as e:
        return {"name": name, "seed": seed, "error": e.stderr.strip().splitlines()[-1:]}
    with open(run_dir / "metrics.csv") as f:
        secs = sum(float(row["train_seconds"]) for row in csv.DictReader(f))
    return {"name": name, "seed": seed, "miou": res["mIoU"], "dice": res["per_class"][0]["dice"], "secs": secs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time")
    ap.add_argument("--workers", type=int, default=1, help="loader workers per run")
    ap.add_argument("--only", help="comma-separated variant names (default: all)")
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="segcli-sweep-"))
    data = isbi_split(data_root(a.data_root), work / "isbi")
    names = [n.strip() for n in a.only.split(",")] if a.only else list(VARIANTS)
    jobs = [(n, VARIANTS[n], s) for s in range(a.seeds) for n in names]

    def one(job: tuple) -> dict:
        r = run(*job, data, work / "runs", a)
        print("  done:", r, flush=True)  # a run cut short still leaves the finished ones
        return r

    with ThreadPoolExecutor(a.jobs) as pool:
        results = list(pool.map(one, jobs))
    print(f"ISBI, {a.epochs} epochs, seeds 0-{a.seeds - 1}, device {a.device}: test mIoU / membrane Dice (mean over seeds)\n")
    print("| variant | test mIoU | per seed | membrane Dice | train s |")
    print("|---|---|---|---|---|")
    for n in names:
        rs = [r for r in results if r["name"] == n]
        if any("error" in r for r in rs):
            print(f"| {n} | failed: {[r.get('error') for r in rs]} | | | |")
            continue
        m = [r["miou"] for r in rs]
        print(f"| {n} | {np.mean(m):.4f} | {' '.join(f'{x:.4f}' for x in m)} | {np.mean([r['dice'] for r in rs]):.4f} "
              f"| {np.mean([r['secs'] for r in rs]):.0f} |")


if __name__ == "__main__":
    main()
