"""Which images to label next: simulated labelling rounds, each strategy of `segcli select` against
random selection, the hidden masks standing in for the person.

Per seed: a seeded random start of labelled images; then rounds of `segcli select --count STEP` with
each strategy from the pool minus what is labelled, the picks' true masks joining that strategy's
dataset, and `segcli train` with its defaults for the same --time budget (the same training seed for
every strategy in a round) on what is labelled; every model scored on images never used for any
choice. The random arm goes on for --random-extra more rounds: the labels-vs-mIoU curve that says
how many labelled images random selection needs to reach what segcli's selection reached.

- CamVid-full: pool = camvid-full/train minus a fixed validation fold (every 23rd image, 16 images
  spread over the 4 sequences, never in the pool); start 24, +24 a round; scored on camvid-full/val
  (101 images). The validation fold selects best.pt and calibrates the quality estimate for every
  strategy alike, so the arms differ only in the training images they chose (carving validation
  out of each arm's labelled images would make it depend on the strategy).
- ISBI 2012: pool = images 0-19, start 4, +4 a round; validation 20-23; scored on 24-29.

Strategies (`segcli select` options): random; entropy (--strategy entropy --no-diversity, the
classic baseline); estimate (--no-diversity: lowest estimated quality first); estimate+div (the
default: the estimate, spread over the pool in proportion); estimate+apart (--spread apart: the
estimate, each pick far from the others); entropy+div on request.

`--start last` trains each round from the previous round's weights instead of from scratch; it
needs `segcli train --init CKPT` (start from a checkpoint's weights, fresh optimiser and schedule),
and stops with a message where this segcli's train lacks it.

    python benchmarks/active_learning.py                         # CamVid 4m and ISBI 2m a run, 3 seeds: ~5 h
    python benchmarks/active_learning.py --only camvid --seeds 0 --budget 4m
    python benchmarks/active_learning.py --only isbi --budget 20s --seeds 0 --rounds 1 --random-extra 1 \\
        --start-count 2 --step 2                                 # smoke run, ~3 min on 2 cores
    python benchmarks/active_learning.py --jobs 6 --common "--device cuda --workers 2"   # a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import data_root, segcli  # noqa: E402

ARMS = {  # name: `segcli select` options
    "random": ["--strategy", "random"],
    "entropy": ["--strategy", "entropy", "--no-diversity"],
    "entropy+div": ["--strategy", "entropy"],
    "estimate": ["--strategy", "quality", "--no-diversity"],
    "estimate+apart": ["--strategy", "quality", "--spread", "apart"],
    "estimate+div": ["--strategy", "quality"],
}
OURS = "estimate+div"  # what `segcli select` does by default


@dataclass
class Setup:
    """One dataset: the pool (stem -> (image, mask)), the fixed validation pairs and the scoring folder."""

    name: str
    pool: dict[str, tuple[Path, Path]]
    val: list[tuple[Path, Path]]
    test: Path
    train_args: list[str]
    classes: Optional[Path] = None
    start: int = 24
    step: int = 24


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        os.symlink(src.resolve(), dst)


def camvid(root: Path, work: Path) -> Setup:  # noqa: ARG001 (the same signature as isbi)
    src = root / "camvid-full"
    images = sorted((src / "train" / "images").iterdir())
    pairs = [(p, src / "train" / "masks" / f"{p.stem}.png") for p in images]
    val = pairs[11::23]
    pool = {p.stem: (p, m) for p, m in pairs if (p, m) not in val}
    return Setup("camvid", pool, val, src / "val", ["--ignore-index", "11"], src / "classes.txt")


def isbi(root: Path, work: Path) -> Setup:
    src = root / "isbi2012-membrane"
    pair = lambda i: (src / "images" / f"{i}.png", src / "masks" / f"{i}.png")  # noqa: E731
    test = work / "isbi_test"
    for i in range(24, 30):
        image, mask = pair(i)
        _link(image, test / "images" / image.name)
        _link(mask, test / "masks" / mask.name)
    return Setup("isbi", {str(i): pair(i) for i in range(20)}, [pair(i) for i in range(20, 24)], test, [], None, 4, 4)


def dataset(setup: Setup, stems: list[str], folder: Path) -> Path:
    """folder/{train,val}/{images,masks} as symlinks: the labelled stems and the validation fold (made anew)."""
    for part in ("train", "val"):
        if (folder / part).is_dir():
            shutil.rmtree(folder / part)  # links of an earlier invocation with other options
    for part, pairs in (("train", [setup.pool[s] for s in stems]), ("val", setup.val)):
        for image, mask in pairs:
            _link(image, folder / part / "images" / image.name)
            _link(mask, folder / part / "masks" / mask.name)
    if setup.classes is not None:
        _link(setup.classes, folder / "classes.txt")
    return folder


@dataclass
class Bench:
    """One dataset's runs: the options and the results so far (work/NAME/results.json, saved after
    every step, so --reuse resumes a run cut short)."""

    work: Path  # where `segcli train` puts runs/
    folder: Path  # work/NAME: datasets and results.json
    budget: str
    common: list[str]
    start_mode: str
    results: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def save(self) -> None:
        with self.lock:
            (self.folder / "results.json").write_text(json.dumps(self.results, indent=1))

    def train_and_score(self, setup: Setup, key: str, stems: list[str], seed: int, init: Optional[Path]) -> dict:
        """Train on the labelled `stems`, score on the test images; cached under `key`."""
        if key in self.results:
            return self.results[key]
        data = dataset(setup, stems, self.folder / key.replace("/", "_"))
        extra = ["--init", str(init)] if init is not None else []
        t0 = time.perf_counter()
        run = segcli(["train", data, "--time", self.budget, "--seed", seed, "--name", f"al_{setup.name}_{key.replace('/', '_')}",
                      "--exist-ok", "--logger", "none", *setup.train_args, *self.common, *extra], self.work).strip()
        best = self.work / run / "weights" / "best.pt"
        score = json.loads(segcli(["evaluate", setup.test, "--model", best, "--json", *self._device()], self.work))
        row = {"labelled": len(stems), "stems": stems, "mIoU": score["mIoU"], "best": str(best), "data": str(data),
               "train_seconds": round(time.perf_counter() - t0, 1)}
        self.results[key] = row
        self.save()
        print(f"  {key}: {len(stems)} labelled, mIoU {row['mIoU']:.4f}", flush=True)
        return row

    def _device(self) -> list[str]:
        c = self.common
        return c[c.index("--device"): c.index("--device") + 2] if "--device" in c else []

    def select(self, setup: Setup, arm: str, prev: dict, step: int, seed: int, pool_dir: Path) -> list[str]:
        """`segcli select` with the arm's options, the images labelled so far skipped: the picks' stems."""
        out = segcli(["select", pool_dir, "--count", step, "--model", prev["best"], "--labeled", prev["data"], "--json",
                      "--seed", seed * 1000 + len(prev["stems"]), *ARMS[arm], *self._device()], self.work)
        return [Path(json.loads(line)["image"]).stem for line in out.strip().splitlines()]

    def chain(self, setup: Setup, arm: str, seed: int, start: dict, rounds: int, pool_dir: Path) -> None:
        prev = start
        for r in range(1, rounds + 1):
            key = f"s{seed}/{arm}/r{r}"
            if key not in self.results:
                picks = self.select(setup, arm, prev, setup.step, seed, pool_dir)
                init = Path(prev["best"]) if self.start_mode == "last" else None
                prev = self.train_and_score(setup, key, prev["stems"] + picks, 1000 * seed + r, init)
            prev = self.results[key]


def run_setup(bench: Bench, setup: Setup, seeds: list[int], arms: list[str], rounds: int, extra: int,
              jobs: int) -> None:
    import numpy as np

    pool_dir = bench.folder / "pool"
    for stem, (image, _) in setup.pool.items():
        _link(image, pool_dir / image.name)
    stems = sorted(setup.pool)
    with ThreadPoolExecutor(jobs) as ex:
        starts = list(ex.map(lambda s: bench.train_and_score(
            setup, f"s{s}/start/r0", sorted(np.random.default_rng(s).choice(stems, setup.start, replace=False).tolist()),
            1000 * s, None), seeds))
        chains = [(a, s, st, rounds + (extra if a == "random" else 0)) for s, st in zip(seeds, starts) for a in arms]
        list(ex.map(lambda c: bench.chain(setup, c[0], c[1], c[2], c[3], pool_dir), chains))


def mious(results: dict, seed: int, arm: str, rounds: int) -> list[Optional[float]]:
    """mIoU after rounds 0..rounds (round 0: the shared random start)."""
    keys = [f"s{seed}/start/r0"] + [f"s{seed}/{arm}/r{r}" for r in range(1, rounds + 1)]
    return [results[k]["mIoU"] if k in results else None for k in keys]


def labels_needed(curve: list[tuple[int, float]], target: float) -> Optional[float]:
    """The labelled count at which the (count, mIoU) curve first reaches `target`, linearly interpolated."""
    for (n0, m0), (n1, m1) in zip(curve, curve[1:]):
        if m0 >= target:
            return float(n0)
        if m1 >= target:
            return n0 + (n1 - n0) * (target - m0) / (m1 - m0)
    return float(curve[-1][0]) if curve and curve[-1][1] >= target else None


def report(setup: Setup, results: dict, seeds: list[int], arms: list[str], rounds: int, extra: int) -> list[str]:
    import numpy as np

    lines = [f"**{setup.name}**: start {setup.start}, +{setup.step} a round, test mIoU", "",
             "| seed | round | labelled | " + " | ".join(arms) + " |", "|---|---|---|" + "---|" * len(arms)]
    table = {a: np.array([mious(results, s, a, rounds) for s in seeds], dtype=float) for a in arms}
    for i, s in enumerate(seeds):
        for r in range(rounds + 1):
            lines.append(f"| {s} | {r} | {setup.start + r * setup.step} | "
                         + " | ".join(f"{table[a][i, r]:.4f}" for a in arms) + " |")
    for r in range(rounds + 1):
        lines.append(f"| mean | {r} | {setup.start + r * setup.step} | "
                     + " | ".join(f"**{np.nanmean(table[a][:, r]):.4f}**" for a in arms) + " |")
    lines.append("")
    for ours in [a for a in ("estimate+div", "estimate+apart", "estimate") if a in arms]:
        for base, need in (("random", 0.02), ("entropy", -0.005)):
            if base in arms:
                d = table[ours][:, rounds] - table[base][:, rounds]
                lines.append(f"{ours} - {base} after round {rounds}: mean {np.nanmean(d):+.4f} (per seed "
                             f"{' '.join(f'{x:+.4f}' for x in d)}; {int((d >= need).sum())} of {len(d)} seeds "
                             f">= {need:+.3f}); target mean >= {need:+.3f}: "
                             f"{'met' if np.nanmean(d) >= need else 'NOT met'}")
    if "random" in arms and OURS in arms:
        lines += ["", f"labels saved: random selection's labelled count at {OURS}'s round-{rounds} mIoU "
                  f"({setup.start + rounds * setup.step} labelled), interpolated on random's curve:"]
        for i, s in enumerate(seeds):
            curve = [(setup.start + r * setup.step, m) for r, m in
                     enumerate(mious(results, s, "random", rounds + extra)) if m is not None]
            need = labels_needed(curve, table[OURS][i, rounds])
            mine = setup.start + rounds * setup.step
            lines.append(f"- seed {s}: " + (f"{need:.0f} labelled ({need - mine:+.0f})" if need is not None
                                            else f"more than {curve[-1][0]} (random never reached it)"))
    return lines + [""] + mix(results, seeds, arms, rounds, list(setup.pool))


def mix(results: dict, seeds: list[int], arms: list[str], rounds: int, pool: list[str]) -> list[str]:
    """Where each arm's labelled images came from (the stem's prefix before "_": CamVid's video
    sequence), after the last round: which kinds of image a strategy favours."""
    stems = {a: [st for s in seeds for st in results.get(f"s{s}/{a}/r{rounds}", {}).get("stems", [])] for a in arms}
    kinds = sorted({st.split("_")[0] for v in stems.values() for st in v if "_" in st})
    if not kinds:
        return []
    lines = [f"labelled images by source (the stem before \"_\") after round {rounds}, all seeds:", "",
             "| arm | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for a in arms:
        counts = [sum(st.startswith(k + "_") for st in stems[a]) for k in kinds]
        lines.append(f"| {a} | " + " | ".join(str(c) for c in counts) + " |")
    share = [sum(st.startswith(k + "_") for st in pool) / max(len(pool), 1) for k in kinds]
    return lines + ["| the pool's share | " + " | ".join(f"{x:.0%}" for x in share) + " |", ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root")
    ap.add_argument("--work", default="runs/bench/active_learning", help="Runs, datasets and results.json.")
    ap.add_argument("--only", choices=["camvid", "isbi"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budget", default="4m", help="CamVid's --time per training run.")
    ap.add_argument("--isbi-budget", default="2m", help="ISBI's --time per training run.")
    ap.add_argument("--arms", default="random,entropy,estimate,estimate+div", help=f"from {', '.join(ARMS)}")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--random-extra", type=int, default=4, help="More random rounds for the labels-saved curve.")
    ap.add_argument("--start-count", type=int, help="Labelled images at the start (CamVid 24, ISBI 4).")
    ap.add_argument("--step", type=int, help="Images added a round (CamVid 24, ISBI 4).")
    ap.add_argument("--start", choices=["scratch", "last"], default="scratch", dest="start_mode",
                    help="Train each round from scratch or from the previous round's weights (needs train --init).")
    ap.add_argument("--common", default="", help="Extra options for train, select and evaluate's device (e.g. --device cuda).")
    ap.add_argument("--jobs", type=int, default=1, help="Runs at a time (a GPU; on a CPU, time budgets need 1).")
    ap.add_argument("--reuse", action="store_true", help="Keep the results already in --work/results.json.")
    a = ap.parse_args()
    arms = a.arms.split(",")
    if unknown := set(arms) - set(ARMS):
        ap.error(f"unknown arms {sorted(unknown)}; valid: {', '.join(ARMS)}")
    if a.start_mode == "last" and "--init" not in segcli(["train", "--help"]):
        raise SystemExit("--start last needs `segcli train --init CKPT` (start from a checkpoint's weights with a "
                         "fresh optimiser and schedule), which this segcli does not have")
    root, work = data_root(a.data_root), Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in a.seeds.split(",")]
    for name, make, budget in (("camvid", camvid, a.budget), ("isbi", isbi, a.isbi_budget)):
        if a.only not in (None, name):
            continue
        setup = make(root, work)
        setup.start, setup.step = a.start_count or setup.start, a.step or setup.step
        bench = Bench(work, work / name, budget, a.common.split(), a.start_mode)
        bench.folder.mkdir(parents=True, exist_ok=True)
        if a.reuse and (bench.folder / "results.json").is_file():
            bench.results = json.loads((bench.folder / "results.json").read_text())
        run_setup(bench, setup, seeds, arms, a.rounds, a.random_extra, a.jobs)
        part = report(setup, bench.results, seeds, arms, a.rounds, a.random_extra)
        print("\n" + "\n".join(part), flush=True)
    print(f"runs kept in {work}/runs/train, each dataset's results in {work}/NAME/results.json")


if __name__ == "__main__":
    main()
