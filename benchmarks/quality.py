"""Quality benchmark: segcli's defaults (GAN) vs `--gan none` vs the peer users would pick.

Trains and scores, in one run and with the same wall-clock budget each:
  - ISBI membranes: train 0-19, validate 20-23 (model selection), test 24-29 (never seen).
  - CamVid-dev (--ignore-index 11): train on train/ (every 10th image carved out for selection),
    test on val/.
  - peer: segmentation_models_pytorch Unet(resnet18), no pretrained weights, a plain loop
    (random crops + flips, CE + Dice, Adam 1e-3, cosine, bf16), scored at full resolution with
    the same confusion-matrix code.

    python benchmarks/quality.py                      # full budgets (6m ISBI, 8m CamVid): ~45 min
    python benchmarks/quality.py --isbi-time 30s --camvid-time 30s   # smoke run
    python benchmarks/quality.py --update-readme      # rewrite the README's results table
    python benchmarks/quality.py --only isbi --fp32   # ISBI, plus the defaults trained in fp32
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import ROOT, camvid_split, data_root, isbi_split, run_peer, run_segcli  # noqa: E402

README = ROOT / "README.md"


def row(name: str, r: dict, binary: bool) -> str:
    per = r["per_class"]
    extra = f"{per[0]['dice']:.3f}" if binary else " ".join(f"{c['iou']:.2f}" if c["iou"] is not None else "-" for c in per)
    return f"| {name} | {r['mIoU']:.3f} | {r['pixel_accuracy']:.3f} | {extra} | {r['seconds']:.0f} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root")
    ap.add_argument("--isbi-time", default="6m")
    ap.add_argument("--camvid-time", default="8m")
    ap.add_argument("--only", choices=["isbi", "camvid"])
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--fp32", action="store_true", help="ISBI: also the defaults in fp32 (bf16 vs fp32 accuracy)")
    ap.add_argument("--extra", default="", help="extra segcli train options for both segcli runs")
    ap.add_argument("--update-readme", action="store_true")
    a = ap.parse_args()
    from segcli.runs import parse_duration

    root = data_root(a.data_root)
    work = Path(tempfile.mkdtemp(prefix="segcli-quality-"))
    extra = a.extra.split()
    lines = []
    if a.only in (None, "isbi"):
        data = isbi_split(root, work / "isbi")
        lines += [f"**ISBI 2012 membranes** (train 0-19, val 20-23, test 24-29; budget {a.isbi_time} each)", "",
                  "| model | test mIoU | pixel acc | membrane Dice | seconds |", "|---|---|---|---|---|"]
        gan = run_segcli("isbi_gan", data, a.isbi_time, extra, work)
        lines.append(row("segcli defaults (GAN)", gan, True))
        print(lines[-1], flush=True)
        plain = run_segcli("isbi_plain", data, a.isbi_time, ["--gan", "none", *extra], work)
        lines.append(row("segcli --gan none", plain, True))
        print(lines[-1], flush=True)
        if a.fp32:  # bf16 autocast must not cost accuracy
            fp32 = run_segcli("isbi_fp32", data, a.isbi_time, ["--precision", "32", *extra], work)
            lines.append(row("segcli defaults, --precision 32", fp32, True))
            print(lines[-1], flush=True)
        if not a.skip_peer:
            peer = run_peer(data, parse_duration(a.isbi_time), None)
            lines.append(row("smp Unet-resnet18 (plain loop)", peer, True))
            print(lines[-1], f"({peer['steps']} steps)", flush=True)
        lines.append("")
    if a.only in (None, "camvid"):
        data = camvid_split(root, work / "camvid")
        lines += [f"**CamVid-dev** (train/ minus every 10th image for selection; test = val/; budget {a.camvid_time} each)", "",
                  "| model | test mIoU | pixel acc | per-class IoU | seconds |", "|---|---|---|---|---|"]
        gan = run_segcli("camvid_gan", data, a.camvid_time, ["--ignore-index", "11", *extra], work)
        lines.append(row("segcli defaults (GAN)", gan, False))
        print(lines[-1], flush=True)
        plain = run_segcli("camvid_plain", data, a.camvid_time, ["--ignore-index", "11", "--gan", "none", *extra], work)
        lines.append(row("segcli --gan none", plain, False))
        print(lines[-1], flush=True)
        if not a.skip_peer:
            peer = run_peer(data, parse_duration(a.camvid_time), 11)
            lines.append(row("smp Unet-resnet18 (plain loop)", peer, False))
            print(lines[-1], f"({peer['steps']} steps)", flush=True)
    table = "\n".join(lines)
    print("\n" + table)
    print(f"\nruns kept in {work}")
    if a.update_readme:
        text = README.read_text()
        block = f"<!-- quality:start -->\n{table}\n<!-- quality:end -->"
        text = re.sub(r"<!-- quality:start -->.*<!-- quality:end -->", block, text, flags=re.S)
        README.write_text(text)


if __name__ == "__main__":
    main()
