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
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import _link, camvid_test, data_root, isbi_split, peer_batch, score_test  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"


def camvid_split(root: Path, out: Path, every: int = 10) -> Path:
    src = root / "camvid-dev"
    names = sorted(p.name for p in (src / "train" / "images").iterdir())
    for i, name in enumerate(names):
        part = "val" if i % every == 0 else "train"
        stem = Path(name).stem
        _link(src / "train" / "images" / name, out / part / "images" / name)
        _link(src / "train" / "masks" / f"{stem}.png", out / part / "masks" / f"{stem}.png")
    camvid_test(root, out)
    return out


def segcli(args: list[str], cwd: Path) -> str:
    cmd = [sys.executable, "-m", "segcli", *args]
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return r.stdout


def run_segcli(name: str, data: Path, budget: str, extra: list[str], work: Path) -> dict:
    """Train, then score best.pt on data/test. budget: a --time duration ("6m") or "200ep"."""
    flags = ["--epochs", budget[:-2]] if budget.endswith("ep") else ["--time", budget]
    t0 = time.perf_counter()
    run = segcli(["train", str(data), *flags, "--name", name, "--exist-ok", *extra], work).strip()
    seconds = time.perf_counter() - t0
    result = json.loads(segcli(["evaluate", str(data / "test"), "--model", f"{run}/weights/best.pt", "--json"], work))
    result["seconds"], result["run"] = seconds, run
    return result


def run_peer(data: Path, budget_s: float, ignore: int | None, seed: int = 0) -> dict:
    """The plain smp loop, scored with segcli's own metric code."""
    import segmentation_models_pytorch as smp
    import torch
    import torch.nn.functional as F

    from segcli.data import prepare
    from segcli.data.io import IGNORE, encode_mask, read_image, read_mask, to_float

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    prep = prepare(str(data), 0.2, seed, ignore)
    info = prep.info
    k = 2 if info.binary else info.num_classes

    def load(samples):
        xs, ys = [], []
        for s in samples:
            img = to_float(read_image(s.image))
            xs.append(img)
            ys.append(encode_mask(read_mask(s.mask), info.binary, info.ignore_index))
        return xs, ys

    xs, ys = load(prep.splits.train)
    c = xs[0].shape[2]
    mean = np.mean([x.reshape(-1, c).mean(0) for x in xs], 0)
    std = np.mean([x.reshape(-1, c).std(0) for x in xs], 0) + 1e-3
    xs = [(x - mean) / std for x in xs]
    model = smp.Unet("resnet18", encoder_weights=None, in_channels=c, classes=k)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    dice = smp.losses.DiceLoss("multiclass", ignore_index=IGNORE)
    crop, bs = 256, 4
    gray = c == 1

    def batch():
        return peer_batch(xs, ys, crop, bs, rng, gray, IGNORE)

    model.train()
    t0 = time.perf_counter()
    steps = 0
    while (elapsed := time.perf_counter() - t0) < budget_s:
        for g in opt.param_groups:
            g["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / budget_s)))
        x, y = batch()
        with torch.autocast("cpu", torch.bfloat16):
            logits = model(x)
        logits = logits.float()
        loss = F.cross_entropy(logits, y, ignore_index=IGNORE) + dice(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    seconds = time.perf_counter() - t0
    result = score_test(model, data, info, mean, std)
    result["seconds"] = seconds
    result["steps"] = steps
    return result


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
        if a.fp32:  # issue 7: bf16 autocast must not cost accuracy
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
