"""Semi-supervised benchmark: labeled images alone vs the same plus unlabeled ones, same budget.

  - ISBI: 4 labeled (0-3) + 16 unlabeled (4-19); validation 20-23; test 24-29.
  - CamVid-dev: a quarter of train/ labeled, the rest unlabeled (every 10th of the labeled part
    used for selection would leave too few, so validation = 8 images of the unlabeled rest,
    which the semi run also sees without labels); test = val/.

Runs of a few minutes on 4 (ISBI) or 31 (CamVid) labeled images swing by several points
with the seed alone (CamVid-dev labeled-only: 0.27 and 0.38), so every seed trains both arms and
the table gives each pair and the mean gain.

    python benchmarks/semi.py --seeds 0,1,2        # 3m ISBI, 4m CamVid per run (~45 min)
    python benchmarks/semi.py --isbi-time 30s --only isbi --seeds 0  # smoke run
    python benchmarks/semi.py --only camvid --camvid-time 90ep --jobs 6 --common "--device cuda --workers 2"
        # equal epochs instead of equal time (AdvSemiSeg's convention), six runs side by side on
        # one GPU with 16 cores: ~5 min. 18 at once overloaded the cores and none finished in 8 min.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import camvid_quarter, data_root, isbi_split, run_segcli  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root")
    ap.add_argument("--isbi-time", default="3m", help="a duration, or N epochs as 'Nep'")
    ap.add_argument("--camvid-time", default="4m", help="a duration, or N epochs as 'Nep'")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated; each trains both arms")
    ap.add_argument("--only", choices=["isbi", "camvid"])
    ap.add_argument("--extra", default="", help="extra options for the semi-supervised run")
    ap.add_argument("--common", default="", help="extra options for both runs (e.g. --device cuda)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (a GPU; on a CPU time budgets need 1)")
    a = ap.parse_args()
    root = data_root(a.data_root)
    seeds = [int(x) for x in a.seeds.split(",")]
    work = Path(tempfile.mkdtemp(prefix="segcli-semi-"))
    lines = ["| data | seed | labeled only: test mIoU | + unlabeled: test mIoU | gain | budget |",
             "|---|---|---|---|---|---|"]
    jobs = []
    if a.only in (None, "isbi"):
        data = isbi_split(root, work / "isbi", train=range(0, 4), unlabeled=range(4, 20))
        jobs.append(("ISBI 4 labeled + 16 unlabeled", data, work / "isbi_unlabeled", a.isbi_time, []))
    if a.only in (None, "camvid"):
        data, unl = camvid_quarter(root, work / "camvid")
        jobs.append(("CamVid-dev 1/4 labeled", data, unl, a.camvid_time, ["--ignore-index", "11"]))

    def one(job: tuple) -> float:
        tag, data, options, budget = job
        miou = run_segcli(tag, data, budget, options, work)["mIoU"]
        print(f"  {tag}: test mIoU {miou:.4f}", flush=True)  # a run cut short still leaves the finished ones
        return miou

    runs = []
    for name, data, unl, budget, extra in jobs:
        tag = name.split()[0].lower()
        for seed in seeds:
            common = [*extra, "--seed", str(seed), *a.common.split()]
            runs.append((f"{tag}_sup_{seed}", data, common, budget))
            runs.append((f"{tag}_semi_{seed}", data, [*common, "--unlabeled", str(unl), *a.extra.split()], budget))
    with ThreadPoolExecutor(a.jobs) as pool:
        scores = dict(zip([r[0] for r in runs], pool.map(one, runs)))
    for name, data, unl, budget, extra in jobs:
        tag = name.split()[0].lower()
        pairs = []
        for seed in seeds:
            sup, semi = scores[f"{tag}_sup_{seed}"], scores[f"{tag}_semi_{seed}"]
            pairs.append((sup, semi))
            lines.append(f"| {name} | {seed} | {sup:.3f} | {semi:.3f} | {semi - sup:+.3f} | {budget} |")
            print(lines[-1], flush=True)
        sups, semis = np.array(pairs).T
        gains = semis - sups
        lines.append(f"| **{name}** | mean of {len(seeds)} | {sups.mean():.3f} | {semis.mean():.3f} | "
                     f"**{gains.mean():+.3f}** ({int((gains > 0).sum())} of {len(seeds)} better) | {budget} |")
        print(lines[-1], flush=True)
    print("\n" + "\n".join(lines))
    print(f"\nruns kept in {work}")


if __name__ == "__main__":
    main()
