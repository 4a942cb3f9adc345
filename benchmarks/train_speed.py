"""Training throughput: a segcli training epoch vs a minimal hand-written GAN loop, same process.

Both run the same generator and discriminator (segcli defaults: ResNet-18 U-Net, the flaw D on
every 4th step) with the same batch size, patch size and precision. The hand loop gets its batches as ready-made
tensors (no decoding, no augmentation); segcli runs its real engine (data loader, augmentation,
D step + G step, loss bookkeeping, validation excluded), eager and with `--compile on` (Inductor,
cold and warm on-disk cache). Also: achieved FLOP/s of the step vs a large matmul in the same precision.
The precision is what `segcli train --precision auto` picks here: bf16 on CPUs with AMX / AVX512-BF16,
fp32 on the others (where bf16 is emulated: a 4096x4096 bf16 matmul takes a minute).

    python benchmarks/train_speed.py                 # ISBI train 0-19, patch 256, batch 4
    python benchmarks/train_speed.py --precision 32  # fp32 whatever the CPU
    python benchmarks/train_speed.py --decoder-channels 256,128,64,32,16  # the wide decoder
    python benchmarks/train_speed.py --skip-compile  # without the `--compile on` epochs (~2 minutes less)
    python benchmarks/train_speed.py --device cuda --batch-size 16  # a GPU (bf16 autocast)
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import data_root, isbi_split  # noqa: E402


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: Any, device: Any) -> float:
    import torch

    n, reps = (8192, 20) if device.type == "cuda" else (4096, 5)
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def hand_loop(gen, judge, batches, precision: str, device: Any, d_every: int, weight: float, lr_d: float) -> float:
    """The least the default step can do: G forward; on every d_every-th step the flaw D learns G's
    error map from G's detached output, then G learns from its segmentation loss plus the frozen D's
    mean squared error probability on its output."""
    import torch
    import torch.nn.functional as F

    from segcli.train.losses import segmentation_loss

    opt_g = torch.optim.AdamW(gen.parameters(), 1e-3)
    opt_d = torch.optim.AdamW(judge.parameters(), lr_d)
    out = gen.output

    def amp():
        return torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16")

    n_img = 0
    sync(device)
    t = time.perf_counter()
    for step, (x, y) in enumerate(batches):
        with amp():
            logits = gen(x)
        loss = segmentation_loss(logits, y)
        if step % d_every == 0:  # the D step and G's term, on every d_every-th step as segcli runs them
            probs = out.probabilities(logits.float())
            wrong = (out.labels(logits.detach().float()) != y).float()
            with amp():
                d_logit = judge(x, probs.detach())
            opt_d.zero_grad()
            F.binary_cross_entropy_with_logits(d_logit.float()[:, 0], wrong).backward()
            opt_d.step()
            judge.requires_grad_(False)
            with amp():
                err = torch.sigmoid(judge(x, probs).float())
            loss = loss + weight * (err * err).mean()
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        judge.requires_grad_(True)
        n_img += x.shape[0]
    sync(device)
    return n_img / (time.perf_counter() - t)


def segcli_epochs(cfg: Any, mcfg: Any, steps_per_epoch: int) -> tuple[float, float]:
    """A segcli training run's steady images/s (epoch 1 excluded: it warms up oneDNN kernels, or
    compiles) and how many seconds longer its first epoch took than the steady epochs' mean."""
    from segcli.train.engine import train

    result = train(cfg, mcfg)
    with open(result.run_dir / "metrics.csv") as f:
        seconds = [float(r["train_seconds"]) for r in csv.DictReader(f)]
    steady = seconds[1:]
    ips = steps_per_epoch * cfg.batch_size * len(steady) / sum(steady)
    return ips, seconds[0] - sum(steady) / len(steady)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root")
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "32"],
                    help="auto: what `segcli train` picks on this machine")
    ap.add_argument("--epochs", type=int, default=4, help="segcli epochs (the first is warm-up)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--decoder-channels", default="",
                    help="e.g. 256,128,64,32,16 (the wide decoder); default: what segcli picks for the data")
    ap.add_argument("--skip-compile", action="store_true", help="leave out the `--compile on` epochs")
    a = ap.parse_args()
    import torch

    from segcli.config import DataInfo, ModelConfig, TrainConfig
    from segcli.device import select_precision
    from segcli.models import build_generator
    from segcli.models.estimator import build_estimator
    from segcli.train.resolve import gan_defaults, resolve

    dev = torch.device(a.device)
    prec = select_precision(a.precision, dev).name  # "auto": bf16 only where it is fast
    bs = a.batch_size
    work = Path(tempfile.mkdtemp(prefix="segcli-speed-"))
    data = isbi_split(data_root(a.data_root), work / "isbi")
    steps_per_epoch = 20 // bs  # the loader drops the last partial batch
    base = TrainConfig(data=str(data), epochs=a.epochs, batch_size=bs, img_size=256, precision=prec,
                       device=a.device, project=str(work / "runs"), name="speed", compile="off")
    mcfg = ModelConfig(decoder_channels=[int(c) for c in a.decoder_channels.split(",")] if a.decoder_channels else [])
    segcli_ips, _ = segcli_epochs(base, mcfg, steps_per_epoch)
    compiled: list[tuple[str, float, float]] = []
    if not a.skip_compile:  # cold: an empty Inductor cache; warm: a second run over the same cache
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(work / "inductor")
        for cache in ("cold", "warm"):
            cfg = replace(base, compile="on", name=f"compiled-{cache}")
            torch._dynamo.reset()  # in-memory caches gone, as in a new process; the disk cache stays
            compiled.append((cache, *segcli_epochs(cfg, mcfg, steps_per_epoch)))
    torch.manual_seed(0)
    info = DataInfo(num_classes=2, in_channels=1, binary=True)
    widths = resolve(base, mcfg, info, [(512, 512)], dev.type).model  # the decoder the segcli run trained
    gen = build_generator(widths, info).to(dev, memory_format=torch.channels_last)
    judge = build_estimator(1, 2, True).to(dev, memory_format=torch.channels_last)
    batches = [(torch.randn(bs, 1, 256, 256, device=dev).contiguous(memory_format=torch.channels_last),
                torch.randint(0, 2, (bs, 256, 256), device=dev)) for _ in range(steps_per_epoch * (a.epochs - 1))]
    weight, d_every, lr_d = gan_defaults(base.gan)  # what the default --gan resolves to
    hand_loop(gen, judge, batches[:2], prec, dev, d_every, weight, lr_d)  # warm-up
    hand_ips = hand_loop(gen, judge, batches, prec, dev, d_every, weight, lr_d)

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        hand_loop(gen, judge, batches[:d_every], "32", dev, d_every, weight, lr_d)
    flops_per_img = fc.get_total_flops() / bs / d_every  # the mean step: one GAN step per d_every
    peak = matmul_peak(torch.bfloat16 if prec == "bf16" else torch.float32, dev)
    dec = "-".join(map(str, widths.decoder_channels)) or "256-128-64-32-16"
    print(f"| measure ({prec}, {a.device}, patch 256, batch {bs}, D every {d_every} steps, decoder {dec}) | value |")
    print("|---|---|")
    print(f"| hand-written loop, images/s | {hand_ips:.2f} |")
    print(f"| segcli training epoch, images/s | {segcli_ips:.2f} |")
    print(f"| segcli / hand loop | {segcli_ips / hand_ips:.1%} |")
    for cache, ips, first_extra in compiled:
        print(f"| segcli epoch, `--compile on`, {cache} cache: images/s (vs eager) | {ips:.2f} ({ips / segcli_ips:.2f}x) |")
        print(f"| segcli `--compile on`, {cache} cache: first epoch's extra seconds (compilation) | {first_extra:.1f} |")
    print(f"| step GFLOP per image (G + flaw D, fwd+bwd, mean step) | {flops_per_img / 1e9:.1f} |")
    print(f"| achieved GFLOP/s (segcli) | {segcli_ips * flops_per_img / 1e9:.0f} |")
    print(f"| {prec} matmul peak GFLOP/s | {peak / 1e9:.0f} |")
    print(f"| utilisation | {segcli_ips * flops_per_img / peak:.1%} |")


if __name__ == "__main__":
    main()
