"""Latency of one 512x512 image on this CPU: ONNX Runtime vs PyTorch eager, and `segcli predict` wall time.

Part 1 (in this process): the model's forward pass + activation on one normalised (1, C, 512, 512)
batch with PyTorch eager (fp32, and bf16 autocast when the CPU has fast bf16), the exported
TorchScript, ONNX Runtime (fp32 and --half weights) and OpenCV DNN; timed round-robin so load from
other processes hits every backend alike; median and min over --reps.
Part 2: wall time of a whole one-image `segcli predict` in a fresh process (.pt vs .onnx),
interpreter start, imports, model load, PNG read/write included.

    python benchmarks/export_latency.py [--model best.pt] [--reps 10] [--wall-reps 3]

Without --model it uses a default-architecture model (encoder auto = ResNet-18 U-Net, gray in,
binary out: the ISBI shape) with random weights: latency does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import load_generator, make_checkpoint, segcli_cmd, wall  # noqa: E402


def backends(pt: Path, gen: Any, work: Path) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    import cv2
    import torch

    from segcli.device import cpu_has_fast_bf16
    from segcli.infer.export import export_model
    from segcli.infer.onnxrt import session

    act = gen.output.probabilities  # sigmoid for a binary model, else softmax
    onnx32 = export_model(pt, "onnx", work / "model.onnx").path
    onnx16 = export_model(pt, "onnx", work / "model_half.onnx", half=True).path
    with warnings.catch_warnings():  # torch.jit.load's deprecation notice
        warnings.simplefilter("ignore", FutureWarning)
        ts = torch.jit.load(str(export_model(pt, "torchscript", work / "model.torchscript").path))

    def eager(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return act(gen(torch.from_numpy(x))).numpy()

    def eager_bf16(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return act(gen(torch.from_numpy(x)).float()).numpy()

    def script(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return ts(torch.from_numpy(x)).numpy()

    def ort(sess):  # noqa: ANN001, ANN202
        return lambda x: sess.run(None, {"image": x})[0]

    net = cv2.dnn.readNetFromONNX(str(onnx32))

    def opencv(x: np.ndarray) -> np.ndarray:
        net.setInput(x)
        return net.forward()

    out = {"PyTorch eager fp32 (baseline)": eager}
    if cpu_has_fast_bf16():
        out["PyTorch eager bf16 autocast"] = eager_bf16
    out.update({"TorchScript fp32": script, "ONNX Runtime fp32": ort(session(onnx32)),
                "ONNX Runtime fp16 weights (--half)": ort(session(onnx16)), "OpenCV DNN fp32": opencv})
    return out


def time_round_robin(fns: dict[str, Callable[[np.ndarray], np.ndarray]], x: np.ndarray, reps: int) -> dict[str, list[float]]:
    for fn in fns.values():  # warm-up: allocator, ORT/oneDNN kernel selection
        fn(x)
        fn(x)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn(x)
            times[k].append(time.perf_counter() - t0)
    return times


def wall_round_robin(cmds: dict[str, list[str]], reps: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(reps):
        for k, cmd in cmds.items():
            times[k].append(wall(cmd))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a segcli .pt checkpoint (default: a random default model)")
    ap.add_argument("--channels", type=int, default=1, help="input channels of the random model")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--wall-reps", type=int, default=3)
    ap.add_argument("--work", default="runs/bench/export_latency")
    args = ap.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)

    import onnxruntime
    import torch

    # no training patch recorded: predict then tiles only what is too big for one pass
    pt = Path(args.model) if args.model else make_checkpoint(work / "model.pt", args.channels, img_size=0)
    gen, ckpt = load_generator(pt)
    c = ckpt.data.in_channels
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, c, args.size, args.size), dtype=np.float32)
    fns = backends(pt, gen, work)
    times = time_round_robin(fns, x, args.reps)
    base = statistics.median(times["PyTorch eager fp32 (baseline)"])
    print(f"\none {args.size}x{args.size} image, {c} channel(s), forward + activation, in process; "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"onnxruntime {onnxruntime.__version__}; {args.reps} round-robin reps")
    print(f"{'backend':38} {'median ms':>10} {'min ms':>8} {'median / baseline':>18}")
    for k, t in times.items():
        med = statistics.median(t)
        print(f"{k:38} {med * 1e3:>10.1f} {min(t) * 1e3:>8.1f} {med / base:>18.2f}")

    img = work / "image.png"
    arr = rng.integers(0, 256, (args.size, args.size) + (() if c == 1 else (3,)), dtype=np.uint8)
    Image.fromarray(arr).save(img)
    py = [sys.executable]
    seg = segcli_cmd("-q", "predict", img, "-o", work / "mask.png", "-m")
    cmds = {
        "segcli predict -m model.pt (auto precision)": seg + [str(pt)],
        "segcli predict -m model.pt --precision 32": seg + [str(pt), "--precision", "32"],
        "segcli predict -m model.onnx": seg + [str(work / "model.onnx")],
        "python -c 'import torch'": py + ["-c", "import torch"],
        "python -c 'import onnxruntime'": py + ["-c", "import onnxruntime"],
    }
    wt = wall_round_robin(cmds, args.wall_reps)
    base = statistics.median(wt["segcli predict -m model.pt (auto precision)"])
    print(f"\nwall time of one command in a new process, {args.wall_reps} round-robin reps")
    print(f"{'command':44} {'median s':>9} {'min s':>7} {'median / .pt auto':>18}")
    for k, t in wt.items():
        med = statistics.median(t)
        print(f"{k:44} {med:>9.2f} {min(t):>7.2f} {med / base:>18.2f}")


if __name__ == "__main__":
    main()
