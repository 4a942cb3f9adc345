"""Throughput of `segcli predict` on a folder of ISBI images vs a bare forward loop of the same model.

    python benchmarks/predict.py [--data-root /work/shared/data] [--count 30] [--batch-size 4]

The tool runs as a real subprocess (`python -m segcli predict FOLDER`), twice: on 1 image and
on COUNT images; steady-state images/s = (COUNT - 1) / (t_COUNT - t_1), so interpreter start-up
and model loading cancel out. The baseline, in the same run: the same checkpoint's generator,
same precision (segcli's `auto`), inference_mode, channels_last, same batch size, over the
same images already decoded and normalised in memory: nothing but forward passes.
A default-architecture model with untrained weights is used: weights do not change speed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import data_root, load_generator, make_checkpoint, segcli, segcli_cmd, wall  # noqa: E402


def run_tool(folder: Path, model: Path, out: Path, batch: int, extra: list[str]) -> float:
    """Wall seconds of one `segcli predict FOLDER` in a new process."""
    return wall(segcli_cmd("-q", "predict", folder, "--model", model, "-o", out, "-b", batch, *extra))


def export_onnx(model: Path) -> Path:
    out = model.with_suffix(".onnx")
    segcli(["-q", "export", "-m", model, "-o", out])
    return out


def bare_loop(model: Path, images: list[Path], batch: int, device: str) -> float:
    """Seconds for forward passes alone over the images (decoded and normalised beforehand)."""
    import numpy as np
    import torch

    from segcli.data.io import read_image
    from segcli.device import select_device, select_precision
    from segcli.infer.predictor import Predictor

    gen, ckpt = load_generator(model)
    dev = select_device(device)
    prec = select_precision("auto", dev)
    gen = gen.to(dev, memory_format=torch.channels_last).eval()
    prep = Predictor(lambda x: x, ckpt.data, ckpt.output)  # the tool's own preprocessing
    xs = [torch.from_numpy(np.stack([prep.preprocess(read_image(p)) for p in images[i : i + batch]]))
          .to(dev).contiguous(memory_format=torch.channels_last) for i in range(0, len(images), batch)]
    with torch.inference_mode(), prec.autocast():
        gen(xs[0])  # warm-up (kernel selection), as the tool's first batch also pays it
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for x in xs:
            gen(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0


def smp_loop(images: list[Path], batch: int) -> float | None:
    """The peer users would pick: smp's Unet-resnet18, bf16, over the same images in memory."""
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        return None
    import numpy as np
    import torch

    from segcli.data.io import read_image

    net = smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=1).eval()
    net = net.to(memory_format=torch.channels_last)
    xs = [torch.from_numpy(np.stack([read_image(p).astype(np.float32).transpose(2, 0, 1) / 255 for p in images[i : i + batch]]))
          .contiguous(memory_format=torch.channels_last) for i in range(0, len(images), batch)]
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        net(xs[0])
        t0 = time.perf_counter()
        for x in xs:
            net(x)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--count", type=int, default=30, help="images (ISBI has 30; more repeat them)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--overlay", action="store_true", help="also write overlays (more encoding work)")
    a = ap.parse_args()

    src = sorted((data_root(a.data_root) / "isbi2012-membrane" / "images").resolve().glob("*.png"), key=lambda p: int(p.stem))
    with tempfile.TemporaryDirectory(prefix="segcli-bench-") as tmp:
        tmp_path = Path(tmp)
        folder, one = tmp_path / "images", tmp_path / "one"
        folder.mkdir()
        one.mkdir()
        images = []
        # real copies: predict skips repeated inputs by resolved path, so symlinks to the same
        # 30 files would be predicted once each and inflate the count (as an earlier version did)
        for i in range(a.count):  # more than 30 repeats the set
            dst = folder / f"{i:03d}.png"
            shutil.copyfile(src[i % len(src)], dst)
            images.append(dst)
        shutil.copyfile(src[0], one / "000.png")
        model = tmp_path / "model.pt"
        make_checkpoint(model, in_channels=1)
        extra = ["--device", a.device] + (["--overlay"] if a.overlay else [])
        t1 = run_tool(one, model, tmp_path / "out1", a.batch_size, extra)
        tn = run_tool(folder, model, tmp_path / "outn", a.batch_size, extra)
        onnx = export_onnx(model) if a.device in ("auto", "cpu") else None
        if onnx is not None:  # the same steady-state subtraction through ONNX Runtime
            o1 = run_tool(one, onnx, tmp_path / "onnx1", a.batch_size, [])
            on = run_tool(folder, onnx, tmp_path / "onnxn", a.batch_size, [])
        bare = bare_loop(model, images, a.batch_size, a.device)
        peer = smp_loop(images, a.batch_size) if a.device in ("auto", "cpu") else None

    tool_ips = (a.count - 1) / (tn - t1)
    bare_ips = a.count / bare
    rows = [("segcli predict, 1 image (wall, incl. start-up)", f"{t1:.2f} s", ""),
            (f"segcli predict, {a.count} images (wall)", f"{tn:.2f} s", f"{a.count / tn:.2f} img/s end to end"),
            ("segcli predict, steady state", f"{(tn - t1):.2f} s / {a.count - 1}", f"{tool_ips:.2f} img/s"),
            (f"bare forward loop, {a.count} images", f"{bare:.2f} s", f"{bare_ips:.2f} img/s")]
    if onnx is not None:
        rows.append(("segcli predict .onnx, steady state", f"{(on - o1):.2f} s / {a.count - 1}",
                     f"{(a.count - 1) / (on - o1):.2f} img/s (1 image: {o1:.2f} s wall)"))
    w = max(len(r[0]) for r in rows)
    print(f"512x512 ISBI, default model (encoder auto = resnet18), batch {a.batch_size}, device {a.device}")
    for name, t, ips in rows:
        print(f"{name:<{w}}  {t:>14}  {ips}")
    print(f"ratio segcli / bare loop: {tool_ips / bare_ips:.1%} (target >= 80%)")
    if peer is not None:
        print(f"smp Unet-resnet18 bf16 forward loop, {a.count} images: {peer:.2f} s, {a.count / peer:.2f} img/s")
        print(f"ratio segcli predict steady state / smp loop: {tool_ips / (a.count / peer):.1%} (target >= 100%)")


if __name__ == "__main__":
    main()
