"""Quality benchmark: segcli's defaults (GAN) vs `--gan none` vs the peer users would pick.

Trains and scores, in one run and with the same wall-clock budget each:
  - ISBI membranes: train 0-19, validate 20-23 (model selection), test 24-29 (never seen).
  - CamVid-dev (--ignore-index 11): train on train/ (every 10th image carved out for selection),
    test on camvid-full/val minus camvid-dev/val (67 street scenes never used in development).
  - peer: segmentation_models_pytorch Unet(resnet18), no pretrained weights, a plain loop
    (random crops + flips, CE + Dice, Adam 1e-3, cosine, bf16 where the CPU runs it fast, else fp32), scored at full resolution with
    the same confusion-matrix code.

    python benchmarks/quality.py                      # full budgets (6m ISBI, 8m CamVid): ~45 min
    python benchmarks/quality.py --short --skip-plain --seeds 0,1,2  # 2m / 4m vs the peer's 6m / 8m
    python benchmarks/quality.py --short --skip-full --skip-plain --seeds 0,1,2  # only 2m / 4m vs the peer
    python benchmarks/quality.py --isbi-time 30s --camvid-time 30s   # smoke run
    python benchmarks/quality.py --only isbi --fp32   # ISBI, plus the defaults trained in fp32
    python benchmarks/quality.py --judges --skip-peer --seeds 0,1,2  # the flaw D (default) vs the seed's
        # real/fake D + judge (--gan lsgan) vs --gan none vs a plain U-Net (--gan none --no-quality)
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import camvid_split, data_root, isbi_split, run_peer, run_segcli  # noqa: E402

PEER = "smp Unet-resnet18 (plain loop)"


def row(name: str, seed: int, r: dict, binary: bool) -> str:
    per = r["per_class"]
    extra = f"{per[0]['dice']:.3f}" if binary else " ".join(f"{c['iou']:.2f}" if c["iou"] is not None else "-" for c in per)
    epochs = r.get("epochs") if r.get("epochs") is not None else "-"
    val = f"{r['val_mIoU']:.3f}" if r.get("val_mIoU") is not None else "-"
    return f"| {name} | {seed} | {r['mIoU']:.3f} | {r['pixel_accuracy']:.3f} | {extra} | {epochs} | {r['seconds']:.0f} | {val} |"


def arms_of(a: argparse.Namespace, budget: str, short: str, binary: bool) -> list[tuple[str, str, list[str]]]:
    """(label, budget, options) of every segcli arm."""
    if a.judges:  # the discriminators side by side, each at the same budget
        return [("segcli defaults (--gan flaw)", budget, []),
                ("segcli --gan lsgan (real/fake D + judge)", budget, ["--gan", "lsgan"]),
                ("segcli --gan none", budget, ["--gan", "none"]),
                ("plain U-Net (--gan none --no-quality)", budget, ["--gan", "none", "--no-quality"])][:3 if a.skip_plain else 4]
    arms = [] if a.short and a.skip_full else [("segcli defaults (GAN)", budget, [])]
    if a.short:
        arms.insert(0, (f"segcli defaults, {short}", short, []))
    if not a.skip_plain:
        arms.append(("segcli --gan none", budget, ["--gan", "none"]))
    if a.fp32 and binary:  # bf16 autocast must not cost accuracy
        arms.append(("segcli defaults, --precision 32", budget, ["--precision", "32"]))
    return arms


def dataset(a: argparse.Namespace, root: Path, work: Path, name: str) -> list[str]:
    """Every arm for every seed on one dataset; returns the table's lines (per seed, then means)."""
    from segcli.runs import parse_duration

    binary = name == "isbi"
    budget, short = (a.isbi_time, a.isbi_short) if binary else (a.camvid_time, a.camvid_short)
    data = isbi_split(root, work / name) if binary else camvid_split(root, work / name)
    common = [] if binary else ["--ignore-index", "11"]
    arms = arms_of(a, budget, short, binary)
    title = ("**ISBI 2012 membranes** (train 0-19, val 20-23, test 24-29" if binary else
             "**CamVid-dev** (train/ minus every 10th image for selection; test = camvid-full/val minus camvid-dev/val, 67 images")
    lines = [f"{title}; budget {budget} unless given)", "",
             f"| model | seed | test mIoU | pixel acc | {'membrane Dice' if binary else 'per-class IoU'} | epochs | seconds | val mIoU |",
             "|---|---|---|---|---|---|---|---|"]
    scores: dict[str, list[float]] = {}
    epochs: dict[str, list[int]] = {}
    for seed in a.seeds:
        for arm, (label, span, opts) in enumerate(arms):
            r = run_segcli(f"{name}_arm{arm}_seed{seed}", data, span,
                           [*common, "--seed", str(seed), *opts, *a.extra.split()], work)
            lines.append(row(label, seed, r, binary))
            scores.setdefault(label, []).append(r["mIoU"])
            epochs.setdefault(label, []).append(r.get("epochs") or 0)
            print(lines[-1], flush=True)
        if not a.skip_peer:
            r = run_peer(data, parse_duration(budget), None if binary else 11, seed)
            lines.append(row(PEER, seed, r, binary))
            scores.setdefault(PEER, []).append(r["mIoU"])
            print(lines[-1], f"({r['steps']} steps)", flush=True)
    lines += ["", "| model | mean test mIoU | per seed | vs the peer | vs the first arm (paired) | epochs vs the last arm |",
              "|---|---|---|---|---|---|"]
    peer, first = scores.get(PEER), scores[arms[0][0]]
    base_epochs = epochs.get(arms[-1][0])
    for label, v in scores.items():
        vs = vs_first = ep = ""
        if peer and label != PEER:
            d = [x - y for x, y in zip(v, peer)]
            vs = f"{sum(d) / len(d):+.3f} (ahead in {sum(x >= 0 for x in d)} of {len(d)})"
        if label != arms[0][0] and label != PEER:
            d = [y - x for x, y in zip(v, first)]
            vs_first = f"first {sum(d) / len(d):+.4f} (" + " ".join(f"{x:+.3f}" for x in d) + ")"
        if base_epochs and label in epochs:
            ep = f"{sum(epochs[label]) / max(sum(base_epochs), 1):.1%}"
        lines.append(f"| {label} | {sum(v) / len(v):.3f} | {' '.join(f'{x:.3f}' for x in v)} | {vs} | {vs_first} | {ep} |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root")
    ap.add_argument("--isbi-time", default="6m")
    ap.add_argument("--camvid-time", default="8m")
    ap.add_argument("--only", choices=["isbi", "camvid"])
    ap.add_argument("--seeds", default="0", type=lambda s: [int(x) for x in s.split(",")],
                    help="comma-separated; every arm and the peer train once per seed")
    ap.add_argument("--short", action="store_true", help="also segcli's defaults at the short budgets below")
    ap.add_argument("--isbi-short", default="2m", help="the short ISBI budget (a third of the peer's)")
    ap.add_argument("--camvid-short", default="4m", help="the short CamVid budget (half the peer's)")
    ap.add_argument("--skip-full", action="store_true",
                    help="with --short: leave out segcli at the full budget (the short run vs the peer only)")
    ap.add_argument("--skip-plain", action="store_true",
                    help="leave out the --gan none arm (with --judges: the plain U-Net arm)")
    ap.add_argument("--judges", action="store_true",
                    help="arms: the default (flaw D), --gan lsgan, --gan none, --gan none --no-quality")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--fp32", action="store_true", help="ISBI: also the defaults in fp32 (bf16 vs fp32 accuracy)")
    ap.add_argument("--extra", default="", help="extra segcli train options for every segcli run")
    a = ap.parse_args()
    if not a.skip_peer and importlib.util.find_spec("segmentation_models_pytorch") is None:
        sys.exit("error: the peer needs segmentation_models_pytorch: pip install -e '.[bench]' (or --skip-peer)")
    root = data_root(a.data_root)
    work = Path(tempfile.mkdtemp(prefix="segcli-quality-"))
    lines: list[str] = []
    for name in ("isbi", "camvid"):
        if a.only in (None, name):
            lines += dataset(a, root, work, name)
    table = "\n".join(lines)
    print("\n" + table)
    print(f"\nruns kept in {work}")


if __name__ == "__main__":
    main()
