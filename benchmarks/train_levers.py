"""Two levers on the training step, measured in one run: torch.compile and the optimizer's kernels.

The default ISBI-sized generator step (ResNet-18 U-Net, gray 256x256 crops, batch 4, binary, CE +
Dice, AdamW) in the precision `--precision auto` picks here:
  - compile: the first compilation's wall time (Inductor; the on-disk cache in a fresh folder, so
    cold), eager vs compiled seconds per step, interleaved, best of N each;
  - optimizer: AdamW's step alone (for-loop vs `foreach` vs `fused`), median ms, and the largest
    weight difference from the for-loop after 15 steps.

    python benchmarks/train_levers.py                # ~3 minutes on a 2-core CPU (the compile ~1.5)
    python benchmarks/train_levers.py --skip-compile
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--skip-compile", action="store_true")
    a = ap.parse_args()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="segcli-inductor-")  # cold
    import torch

    from segcli.config import DataInfo, ModelConfig
    from segcli.device import select_precision
    from segcli.models import build_generator
    from segcli.train.losses import segmentation_loss

    torch.manual_seed(0)
    precision = select_precision("auto", torch.device("cpu"))
    cl = torch.channels_last
    gen = build_generator(ModelConfig(), DataInfo(num_classes=2, in_channels=1, binary=True)).to(memory_format=cl)
    x = torch.randn(4, 1, 256, 256).contiguous(memory_format=cl)
    y = torch.randint(0, 2, (4, 256, 256))
    print(f"precision {precision.name}, torch {torch.__version__}\n")
    if not a.skip_compile:
        opt = torch.optim.AdamW(gen.parameters(), 1e-3)

        def step(g: torch.nn.Module) -> None:
            with precision.autocast():
                loss = segmentation_loss(g(x).float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        compiled = torch.compile(gen, dynamic=False)
        t0 = time.perf_counter()
        step(compiled)
        print(f"| compile (first step, cold cache) | {time.perf_counter() - t0:.1f} s |")
        step(gen)
        best = {"eager": float("inf"), "compiled": float("inf")}
        for _ in range(a.reps):
            for name, g in (("eager", gen), ("compiled", compiled)):
                t0 = time.perf_counter()
                step(g)
                best[name] = min(best[name], time.perf_counter() - t0)
        print(f"| eager step | {best['eager']:.3f} s |\n| compiled step | {best['compiled']:.3f} s "
              f"({best['eager'] / best['compiled']:.2f}x eager) |\n", flush=True)
    grads = [[torch.randn_like(p) * 1e-2 for p in gen.parameters()] for _ in range(3)]
    weights = {}
    for kind in ("for-loop", "foreach", "fused"):
        m = copy.deepcopy(gen)
        kw = {"foreach": False} if kind == "for-loop" else {kind: True}
        opt = torch.optim.AdamW(m.parameters(), 1e-3, weight_decay=1e-4, **kw)
        times = []
        for s in range(15):
            for p, g in zip(m.parameters(), grads[s % 3]):
                p.grad = g.clone()
            t0 = time.perf_counter()
            opt.step()
            times.append(time.perf_counter() - t0)
        weights[kind] = [p.detach().clone() for p in m.parameters()]
        diff = max(float((u - v).abs().max()) for u, v in zip(weights["for-loop"], weights[kind]))
        print(f"| AdamW {kind} | {sorted(times[3:])[len(times[3:]) // 2] * 1e3:.1f} ms median | "
              f"max weight diff vs for-loop {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
