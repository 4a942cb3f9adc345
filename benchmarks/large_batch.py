"""`segcli predict` over 100,000 small images: peak memory, throughput, time to first mask, kill -9 and rerun.

    python benchmarks/large_batch.py [--count 100000] [--reference 1000] [--size 64] [--model M] [--work DIR]

Generates COUNT distinct PNGs (synthetic shapes, SIZExSIZE RGB) once into WORK/images, and uses
`--model` or a default-architecture model with random weights exported to ONNX (memory and speed
do not depend on the weights). Then, each `segcli predict WORK/images -o OUT --json` in a new process:

1. a REFERENCE-image run (the first REFERENCE images): its throughput is the baseline;
2. the COUNT-image run, uninterrupted: peak RSS (the process's own, from wait4), images/s from the
   model being loaded (predict's "model ... loaded" line on stderr) to the last result line, and the
   time from that line to the first mask's result line;
3. the same command killed with SIGKILL once half the inputs are reported, then run again the same
   way: the second run's skipped and written counts, every output present and readable (each mask
   decoded), no temporary file left, and the total time of both runs against run 2's.

Targets: peak RSS < 1 GiB; throughput within 10% of the reference run's; first mask within 3 s
of the model being loaded; kill + rerun <= 1.1x the uninterrupted run. Exit 1 when one is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import _env, make_checkpoint, segcli, segcli_cmd  # noqa: E402


def make_images(folder: Path, count: int, size: int) -> None:
    """COUNT distinct images: 200 synthetic scenes, each copy with its own pixel changed."""
    import numpy as np
    from PIL import Image

    from segcli.data.synthetic import make_pair

    if folder.is_dir() and len(os.listdir(folder)) == count:
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    bases = [make_pair(rng, (size, size), 2, 3)[0] for _ in range(200)]
    for i in range(count):
        im = bases[i % len(bases)].copy()
        im.flat[i % im.size] ^= 0xFF  # distinct content, same size on disk
        Image.fromarray(im).save(folder / f"{i:06d}.png", compress_level=1)


class Run:
    """One `segcli predict ... --json` process, watched line by line."""

    def __init__(self, cmd: list[str], kill_after: Optional[int] = None, stdin: Optional[Path] = None) -> None:
        self.t0 = time.perf_counter()
        # /usr/bin/time reports the peak RSS of predict itself (a child forked from this large process
        # would count this one's pages until it execs); a new session so that a kill reaches both
        with open(stdin or os.devnull, "rb") as src:
            self.proc = subprocess.Popen(["/usr/bin/time", "-f", "PEAK_RSS_KB %M", *cmd], stdin=src,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                                         start_new_session=True)
        self.peak_gib = 0.0
        self.loaded: Optional[float] = None
        self.first: Optional[float] = None
        self.last: Optional[float] = None
        self.lines = self.skipped = 0
        self.stderr: list[str] = []
        err = threading.Thread(target=self._stderr, daemon=True)
        err.start()
        for line in self.proc.stdout:  # type: ignore[union-attr]
            now = time.perf_counter() - self.t0
            d = json.loads(line)
            self.lines += 1
            self.skipped += bool(d.get("skipped"))
            if not d.get("skipped"):
                self.first = self.first if self.first is not None else now
                self.last = now
            if kill_after is not None and self.lines >= kill_after:
                os.killpg(self.proc.pid, signal.SIGKILL)
                break
        self.code = self.proc.wait()
        self.seconds = time.perf_counter() - self.t0
        err.join(timeout=5)
        for line in self.stderr:
            if line.startswith("PEAK_RSS_KB "):
                self.peak_gib = int(line.split()[1]) / 1024**2
            elif line.startswith("Command exited with non-zero status"):
                self.code = int(line.split()[-1])

    def _stderr(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.stderr.append(line)
            if self.loaded is None and " loaded; " in line:
                self.loaded = time.perf_counter() - self.t0

    @property
    def written(self) -> int:
        return self.lines - self.skipped

    @property
    def rate(self) -> float:
        """Images/s from the model being loaded to the last result."""
        assert self.loaded is not None and self.last is not None, "".join(self.stderr[-5:])
        return self.written / max(self.last - self.loaded, 1e-9)


def check_outputs(out: Path, count: int) -> tuple[int, int, int]:
    """(masks present, masks that decode, temporary files left)."""
    from PIL import Image

    names = os.listdir(out)
    masks = [n for n in names if n.endswith(".png")]
    ok = 0
    for n in masks:
        try:
            with Image.open(out / n) as im:
                im.load()
            ok += 1
        except OSError:
            pass
    return len(masks), ok, sum(n.endswith(".tmp") for n in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--reference", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--model", default=None, help="a .pt or .onnx (default: a random default-architecture .onnx)")
    ap.add_argument("--work", default=None, help="where the images and outputs go (default: a temporary folder)")
    ap.add_argument("extra", nargs="*", help="more predict options, after --")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="segcli-batch-")).resolve()
    images = work / "images"
    t0 = time.perf_counter()
    make_images(images, a.count, a.size)
    print(f"{a.count} images {a.size}x{a.size} in {images} ({time.perf_counter() - t0:.0f} s)", flush=True)
    model = Path(a.model) if a.model else work / "model.onnx"
    if not model.is_file():
        make_checkpoint(work / "model.pt", in_channels=3)
        segcli(["-q", "export", "-m", work / "model.pt", "-o", model])
    ref_list = work / "reference.txt"
    ref_list.write_text("\n".join(str(images / f"{i:06d}.png") for i in range(a.reference)) + "\n")

    def predict(source: str, out: Path, kill_after: Optional[int] = None, stdin: Optional[Path] = None) -> Run:
        return Run(segcli_cmd("predict", source, "-m", model, "-o", out, "--json", *a.extra), kill_after, stdin)

    for d in ("out_ref", "out_full", "out_killed"):
        shutil.rmtree(work / d, ignore_errors=True)
    ref = predict("-", work / "out_ref", stdin=ref_list)
    print(f"reference: {ref.written} images, {ref.rate:.1f} images/s, peak {ref.peak_gib:.2f} GiB", flush=True)
    full = predict(str(images), work / "out_full")
    print(f"full: {full.written} images in {full.seconds:.0f} s, {full.rate:.1f} images/s", flush=True)
    killed = predict(str(images), work / "out_killed", kill_after=a.count // 2)
    rerun = predict(str(images), work / "out_killed")
    present, readable, temps = check_outputs(work / "out_killed", a.count)
    first = (full.first or 0) - (full.loaded or 0)
    both = killed.seconds + rerun.seconds
    rows = [
        ("peak RSS, full run", f"{full.peak_gib:.2f} GiB", full.peak_gib < 1.0),
        (f"throughput, full vs {a.reference}-image run", f"{full.rate:.1f} vs {ref.rate:.1f} images/s "
         f"({full.rate / ref.rate:.1%})", full.rate >= 0.9 * ref.rate),
        ("first mask after the model loaded", f"{first:.2f} s", first <= 3.0),
        ("killed at", f"{killed.lines} results reported, {killed.seconds:.0f} s (SIGKILL)", killed.lines < a.count),
        ("rerun", f"{rerun.skipped} skipped, {rerun.written} written, {rerun.seconds:.0f} s, exit {rerun.code}",
         rerun.code == 0 and rerun.skipped + rerun.written == a.count and rerun.skipped >= killed.lines),
        ("outputs after the rerun", f"{present} masks, {readable} readable, {temps} temporary files",
         present == readable == a.count and temps == 0),
        ("kill + rerun vs uninterrupted", f"{both:.0f} s vs {full.seconds:.0f} s ({both / full.seconds:.2f}x)",
         both <= 1.1 * full.seconds),
    ]
    print(f"\n`segcli predict` over {a.count} {a.size}x{a.size} images, model {model.name}\n")
    print("| measure | value | target met |\n|---|---|---|")
    for name, value, ok in rows:
        print(f"| {name} | {value} | {'yes' if ok else 'NO'} |")
    sys.exit(0 if all(ok for *_, ok in rows) else 1)


if __name__ == "__main__":
    main()
