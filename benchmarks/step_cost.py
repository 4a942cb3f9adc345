"""What each discriminator adds to one training step, in the same run (seconds, best of N).

The ISBI-sized step (ResNet-18 U-Net with the encoder's own decoder widths 256-16, gray 256x256
crops, batch 4, binary) in the precision
`--precision auto` picks on this machine: G alone (what `--gan none --no-quality` runs on every step),
G with the judge trained beside it (`--gan none`), G with the flaw D's update and term (`--gan flaw`
on a D step), G with the real/fake D's step and term (`--gan lsgan` on a D step), and the real/fake D
with the judge beside it (today's `--gan lsgan`). A D step runs on every `--d-every`-th step only, so
the mean cost per step is G + (D-step extra) / d_every, printed for the defaults.

    python benchmarks/step_cost.py            # ~1 minute on a 2-core CPU
    python benchmarks/step_cost.py --profile  # also: where a default D step's time goes, by kind of op
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root


def best_of(f: Callable[[], None], reps: int) -> float:
    f()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


# torch.profiler op names -> what they are in a training step (first match wins; the rest: "other")
KINDS = [("convolution backward", ("convolution_backward",)),
         ("convolution forward", ("convolution",)),
         ("batch norm (fwd + bwd)", ("batch_norm",)),
         ("casts and memory-format copies", ("_to_copy", "copy_", "contiguous", "clone", "to_dense")),
         ("upsampling (fwd + bwd)", ("upsample",)),
         ("optimizer (fused AdamW)", ("adam",)),
         ("losses, softmax, top-k, entropy", ("softmax", "nll", "binary_cross", "sigmoid", "topk", "sort", "log")),
         ("activations, adds, other elementwise", ("relu", "threshold", "add", "mul", "sub", "div", "where", "fill",
                                                   "zero", "sum", "mean", "cat", "max_pool"))]


def profile(step: Callable[[], None], reps: int) -> list[tuple[str, float, float]]:
    """(kind, ms per step, share) of `step`'s operator self time, over `reps` steps after a warm-up."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(reps):
            step()
    totals: dict[str, float] = {}
    for ev in prof.key_averages():
        name = ev.key.lower()
        kind = next((k for k, keys in KINDS if any(s in name for s in keys)), "other")
        totals[kind] = totals.get(kind, 0.0) + ev.self_cpu_time_total / 1e3 / reps
    whole = sum(totals.values())
    return sorted(((k, ms, ms / whole) for k, ms in totals.items()), key=lambda r: -r[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--profile", action="store_true", help="also the default D step's operator time by kind")
    a = ap.parse_args()

    import torch  # after parse_args: --help stays fast

    from segcli.config import DataInfo, ModelConfig
    from segcli.device import select_precision
    from segcli.models import build_discriminator, build_generator, class_probabilities
    from segcli.models.estimator import build_estimator
    from segcli.train.gan import (StepSettings, adversarial_term, discriminator_step, flaw_inputs, flaw_step, flaw_term,
                                  generator_step)
    from segcli.train.resolve import gan_defaults

    torch.manual_seed(0)
    cpu = torch.device("cpu")
    precision = select_precision("auto", cpu)
    cast = precision.autocast
    info = DataInfo(num_classes=2, in_channels=1, binary=True)
    cl = torch.channels_last
    g = build_generator(ModelConfig(encoder="resnet18"), info).to(memory_format=cl)
    d = build_discriminator(ModelConfig(), info).to(memory_format=cl)
    e = build_estimator(1, 2, True).to(memory_format=cl)
    og = torch.optim.AdamW(g.parameters(), 1e-3)
    od = torch.optim.Adam(d.parameters(), 2e-4)
    oe = torch.optim.AdamW(e.parameters(), 2e-3)
    x = torch.randn(a.batch, 1, a.size, a.size).contiguous(memory_format=cl)
    y = torch.randint(0, 2, (a.batch, a.size, a.size))
    s = StepSettings(gan="lsgan")

    def forward() -> torch.Tensor:
        with cast():
            return g(x)

    def g_only() -> None:
        generator_step(og, forward(), y, s, [])

    def g_judge() -> None:
        logits = forward()
        flaw_step(e, oe, x, logits, y, g.output, cast)
        generator_step(og, logits, y, s, [])

    def g_flaw(once: bool) -> Callable[[], None]:
        def step() -> None:  # once: D's inputs computed once for its update and G's term (as training does)
            logits = forward()
            inputs = flaw_inputs(e, x, logits, g.output, cast) if once else None
            flaw_step(e, oe, x, logits, y, g.output, cast, inputs=inputs)
            generator_step(og, logits, y, s, [0.1 * flaw_term(e, x, logits, g.output, cast, inputs)])
        return step

    def g_real_fake(judge: bool) -> Callable[[], None]:
        def step() -> None:
            logits = forward()
            discriminator_step(d, od, x, y, class_probabilities(logits.detach().float()), s, cast)
            if judge:
                flaw_step(e, oe, x, logits, y, g.output, cast)
            generator_step(og, logits, y, s, [0.01 * adversarial_term(d, x, logits, "lsgan", cast)])
        return step

    rows = [("G alone (--gan none --no-quality)", g_only, 1),
            ("G + judge beside it (--gan none)", g_judge, gan_defaults("none")[1]),
            ("G + flaw D update and term, D's inputs computed twice", g_flaw(False), gan_defaults("flaw")[1]),
            ("G + flaw D update and term (--gan flaw)", g_flaw(True), gan_defaults("flaw")[1]),
            ("G + real/fake D step and term", g_real_fake(False), gan_defaults("lsgan")[1]),
            ("G + real/fake D + judge (--gan lsgan)", g_real_fake(True), gan_defaults("lsgan")[1])]
    print(f"precision {precision.name}, batch {a.batch}, {a.size}x{a.size}, best of {a.reps}\n")
    print("| step | seconds on a D step | d_every | mean s/step | vs G alone |")
    print("|---|---|---|---|---|")
    base = None
    for label, f, every in rows:
        t = best_of(f, a.reps)
        base = base or t
        mean = base + (t - base) / every
        print(f"| {label} | {t:.3f} | {every} | {mean:.3f} | {base / mean:.1%} |", flush=True)
    if a.profile:
        print(f"\nwhere a default D step's time goes (torch.profiler, operator self time, {a.reps} steps)\n")
        print("| kind of op | ms per step | share |\n|---|---|---|")
        for kind, ms, share in profile(g_flaw(True), a.reps):
            print(f"| {kind} | {ms:.1f} | {share:.1%} |")


if __name__ == "__main__":
    main()
