"""Where does segcli's training recipe lose to the plain smp loop? Swap one part at a time.

Every variant trains for the same number of steps (batch 4, 256 crops, bf16) on the CamVid-dev
split of quality.py (harness.camvid_split) and is scored on the test part at full resolution
with segcli's metric code.
A variant is a set of parts, each taken from the plain loop ("peer") or from segcli:

  model  smp Unet-resnet18            | segcli Generator(resnet18)
  data   numpy crops + h-flip          | SegDataset + train_transforms (augment off, or "aug": on)
  opt    Adam 1e-3, cosine to 0        | AdamW 1e-3 wd 1e-4, 3% warm-up, cosine to 1%
  loss   F.cross_entropy + smp Dice    | segcli.train.losses.segmentation_loss

    python benchmarks/recipe_bisect.py --steps 1500 --device cuda --jobs 6
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import CommandFailed, camvid_split, data_root, isbi_split, peer_batch, run, score_test  # noqa: E402

VARIANTS = {
    "peer": dict(model="peer", data="peer", opt="peer", loss="peer"),
    "model": dict(model="segcli", data="peer", opt="peer", loss="peer"),
    "data": dict(model="peer", data="segcli", opt="peer", loss="peer"),
    "opt": dict(model="peer", data="peer", opt="segcli", loss="peer"),
    "loss": dict(model="peer", data="peer", opt="peer", loss="segcli"),
    "segcli": dict(model="segcli", data="segcli", opt="segcli", loss="segcli"),
    "segcli-aug": dict(model="segcli", data="aug", opt="segcli", loss="segcli"),
}


def run_variant(data: Path, parts: dict, steps: int, seed: int, device: str, ignore: int | None) -> dict:
    import segmentation_models_pytorch as smp
    import torch
    import torch.nn.functional as F

    from segcli.config import ModelConfig
    from segcli.data import prepare
    from segcli.data.dataset import SegDataset, channel_stats
    from segcli.data.io import IGNORE, to_float
    from segcli.data.transforms import train_transforms
    from segcli.models import build_generator
    from segcli.train.losses import segmentation_loss
    from segcli.train.schedule import lr_at

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.set_num_threads(2)  # several variants share the host's cores
    prep = prepare(str(data), 0.2, seed, ignore)
    info = prep.info
    k = 2 if info.binary else info.num_classes
    ds = SegDataset(prep.splits.train, info, transform=None)
    ds.preload()
    ch_mean, ch_std = channel_stats(ds)
    info = ds.info = dataclasses.replace(info, mean=ch_mean, std=ch_std)  # DataInfo is frozen
    mean, std = np.array(info.mean, np.float32), np.array(info.std, np.float32)
    c = info.in_channels
    crop, bs = 256, 4

    if parts["model"] == "peer":
        model = smp.Unet("resnet18", encoder_weights=None, in_channels=c, classes=k)
    else:
        model = build_generator(ModelConfig(encoder="resnet18"), info)
    model = model.to(dev, memory_format=torch.channels_last).train()

    if parts["data"] == "peer":
        xs = [(to_float(ds.load(i)[0]) - mean) / std for i in range(len(ds))]
        ys = [ds.load(i)[1] for i in range(len(ds))]

        def batch():
            return peer_batch(xs, ys, crop, bs, rng, c == 1, IGNORE)
    else:
        ds.transform = train_transforms(crop, info.mean, info.std, c, c == 1, parts["data"] == "aug")

        def batch():
            items = [ds[int(rng.integers(len(ds)))] for _ in range(bs)]
            return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])

    if parts["opt"] == "peer":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def lr(step):
            return 1e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)

        def lr(step):
            return lr_at(1e-3, step / steps)

    dice = smp.losses.DiceLoss("multiclass", ignore_index=IGNORE)

    def loss_fn(logits, y):
        if parts["loss"] == "peer":
            return F.cross_entropy(logits, y, ignore_index=IGNORE) + dice(logits, y)
        return segmentation_loss(logits, y)

    t0 = time.perf_counter()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr(step)
        x, y = batch()
        x = x.to(dev, non_blocking=True, memory_format=torch.channels_last)
        y = y.to(dev, non_blocking=True)
        with torch.autocast(dev.type, torch.bfloat16):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0

    r = score_test(model, data, info, mean, std, device)
    return {"mIoU": r["mIoU"], "per_class": [p["iou"] for p in r["per_class"]], "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root")
    ap.add_argument("--dataset", choices=["camvid", "isbi"], default="camvid")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: variant:seed:data_dir
    a = ap.parse_args()
    if a.one:
        name, seed, data = a.one.split(":", 2)
        ignore = 11 if a.dataset == "camvid" else None
        print(json.dumps(run_variant(Path(data), VARIANTS[name], a.steps, int(seed), a.device, ignore)))
        return
    root = data_root(a.data_root)
    work = Path(tempfile.mkdtemp(prefix="segcli-bisect-"))
    data = camvid_split(root, work / "camvid") if a.dataset == "camvid" else isbi_split(root, work / "isbi")
    jobs = [(v, s) for v in a.variants.split(",") for s in a.seeds]

    def one(job):
        v, s = job
        cmd = [sys.executable, __file__, "--one", f"{v}:{s}:{data}", "--steps", str(a.steps),
               "--device", a.device, "--dataset", a.dataset]
        try:
            r = run(cmd)
        except CommandFailed as e:
            return v, s, {"error": e.stderr[-800:]}
        return v, s, json.loads(r.stdout.strip().splitlines()[-1])

    print(f"{a.dataset}, {a.steps} steps of batch 4, device {a.device}", flush=True)
    print("| variant | parts from segcli | seed | test mIoU | per-class IoU | seconds |\n|---|---|---|---|---|---|", flush=True)
    with ThreadPoolExecutor(a.jobs) as pool:
        for fut in as_completed([pool.submit(one, j) for j in jobs]):  # as they finish
            v, s, r = fut.result()
            mine = ",".join(p for p, src in VARIANTS[v].items() if src != "peer") or "-"
            if "error" in r:
                print(f"| {v} | {mine} | {s} | failed: {r['error'].strip().splitlines()[-1]} | | |", flush=True)
                continue
            per = " ".join("-" if x is None else f"{x:.2f}" for x in r["per_class"])
            print(f"| {v} | {mine} | {s} | {r['mIoU']:.3f} | {per} | {r['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
