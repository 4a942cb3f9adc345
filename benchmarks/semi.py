"""Semi-supervised benchmark: labeled images alone vs the same plus unlabeled ones, same budget.

  - ISBI: 4 labeled (0-3) + 16 unlabeled (4-19); validation 20-23; test 24-29.
  - CamVid-dev: a quarter of train/ labeled, the rest unlabeled (every 10th of the labeled part
    used for selection would leave too few, so validation = 8 images of the unlabeled rest,
    which the semi run also sees without labels); test = camvid-full/val minus camvid-dev/val (67 images).

Runs of a few minutes on 4 (ISBI) or 31 (CamVid) labeled images swing by several points
with the seed alone (CamVid-dev labeled-only: 0.27 and 0.38), so every seed trains both arms and
the table gives each pair and the mean gain.

    python benchmarks/semi.py --seeds 0,1,2        # 4m ISBI, 8m CamVid per run (~72 min)
    python benchmarks/semi.py --only isbi --arms sup,flaw,semi --seeds 0,1,2
        # consistency + the flaw D's correction (--semi flaw) beside consistency alone
    python benchmarks/semi.py --only isbi --arms sup,semi,gated,adversarial,oracle --seeds 0
        # more arms: D as a gate on the pseudo-labels, the adversarial method, and (ISBI) the ceiling:
        # the same budget with all 20 training images labelled
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


ARMS = {  # name: (what the table calls it, options; None: the oracle, every training image labelled)
    "sup": ("labelled only", []),
    "semi": ("+ unlabeled (defaults)", []),
    "gated": ("+ unlabeled, --semi-gate discriminator", ["--semi-gate", "discriminator"]),
    "flaw": ("+ unlabeled, --semi flaw", ["--semi", "flaw"]),
    "adversarial": ("+ unlabeled, --semi adversarial (--gan lsgan)", ["--semi", "adversarial", "--gan", "lsgan"]),
    "oracle": ("all labelled (ceiling)", None),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root")
    ap.add_argument("--isbi-time", default="4m", help="a duration, or N epochs as 'Nep'")
    ap.add_argument("--camvid-time", default="8m", help="a duration, or N epochs as 'Nep'")
    ap.add_argument("--arms", default="sup,semi", help=f"comma-separated, from {', '.join(ARMS)}")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated; each trains both arms")
    ap.add_argument("--only", choices=["isbi", "camvid"])
    ap.add_argument("--extra", default="", help="extra options for the semi-supervised run")
    ap.add_argument("--common", default="", help="extra options for both runs (e.g. --device cuda)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (a GPU; on a CPU time budgets need 1)")
    a = ap.parse_args()
    root = data_root(a.data_root)
    seeds = [int(x) for x in a.seeds.split(",")]
    work = Path(tempfile.mkdtemp(prefix="segcli-semi-"))
    arms = a.arms.split(",")
    if unknown := set(arms) - set(ARMS):
        ap.error(f"unknown arms {sorted(unknown)}; valid: {', '.join(ARMS)}")
    jobs = []
    if a.only in (None, "isbi"):
        data = isbi_split(root, work / "isbi", train=range(0, 4), unlabeled=range(4, 20))
        full = isbi_split(root, work / "isbi_all") if "oracle" in arms else None
        jobs.append(("ISBI 4 labeled + 16 unlabeled", data, work / "isbi_unlabeled", full, a.isbi_time, []))
    if a.only in (None, "camvid"):
        data, unl = camvid_quarter(root, work / "camvid")
        jobs.append(("CamVid-dev 1/4 labeled", data, unl, None, a.camvid_time, ["--ignore-index", "11"]))

    def one(job: tuple) -> float:
        tag, data, options, budget = job
        miou = run_segcli(tag, data, budget, options, work)["mIoU"]
        print(f"  {tag}: test mIoU {miou:.4f}", flush=True)  # a run cut short still leaves the finished ones
        return miou

    runs = []
    for name, data, unl, full, budget, extra in jobs:
        tag = name.split()[0].lower()
        for seed in seeds:
            common = [*extra, "--seed", str(seed), *a.common.split()]
            for arm in arms:
                opts = ARMS[arm][1]
                if arm == "sup":
                    runs.append((f"{tag}_{arm}_{seed}", data, common, budget))
                elif opts is not None:
                    runs.append((f"{tag}_{arm}_{seed}", data, [*common, "--unlabeled", str(unl), *opts, *a.extra.split()], budget))
                elif full is not None:
                    runs.append((f"{tag}_{arm}_{seed}", full, common, budget))
    with ThreadPoolExecutor(a.jobs) as pool:
        scores = dict(zip([r[0] for r in runs], pool.map(one, runs)))
    lines = ["| data | arm | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | gain over labelled only |",
             "|---|---|" + "---|" * len(seeds) + "---|---|"]
    for name, *_ in jobs:
        tag = name.split()[0].lower()
        base = np.array([scores.get(f"{tag}_sup_{s}", np.nan) for s in seeds])
        for arm in arms:
            v = np.array([scores.get(f"{tag}_{arm}_{s}", np.nan) for s in seeds])
            if np.isnan(v).all():
                continue
            gains = v - base
            gain = "" if arm == "sup" or np.isnan(gains).all() else (
                f"**{np.nanmean(gains):+.3f}** ({' '.join(f'{g:+.3f}' for g in gains)}; {int((gains > 0).sum())} of {len(seeds)} better)")
            lines.append(f"| {name} | {ARMS[arm][0]} | " + " | ".join(f"{x:.3f}" for x in v) + f" | {np.nanmean(v):.3f} | {gain} |")
    print("\n" + "\n".join(lines))
    print(f"\nruns kept in {work}")


if __name__ == "__main__":
    main()
