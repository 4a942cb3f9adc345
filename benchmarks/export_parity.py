"""Do exported models predict what their checkpoints predict? ISBI and CamVid-dev validation images.

Trains short models (ISBI 2 epochs, CamVid-dev 1 epoch), exports each to ONNX and TorchScript
(printing the verification difference), predicts the validation images through `segcli predict`
with the .onnx and with the .pt (precision 32, and auto = bf16 autocast on CPUs with AVX512-BF16
or AMX), compares the masks pixel by pixel and scores each with `segcli evaluate`.

    python benchmarks/export_parity.py [--data-root DIR] [--work DIR] [--reuse]

Exit 1 when the .onnx masks match the fp32 .pt masks on fewer than 99.9% of the pixels.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import data_root, isbi_split, run as run_command, segcli, segcli_cmd  # noqa: E402

TARGET = 0.999


def export_diff(model: Path, out: Path) -> float:
    err = run_command(segcli_cmd("export", "-m", model, "-o", out)).stderr  # the check is reported on stderr
    return float(re.search(r"max \|difference\| vs PyTorch = (\S+)", err).group(1))


def masks(folder: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.array(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def agreement(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[float, float]:
    """(share of equal pixels over all images, the worst single image's share)."""
    assert a.keys() == b.keys() and a, (len(a), len(b))
    eq = [(a[k] == b[k]).sum() for k in a]
    n = [a[k].size for k in a]
    return float(sum(eq) / sum(n)), float(min(e / s for e, s in zip(eq, n)))


def miou(val: Path, model: Path, *extra: str) -> float:
    return float(json.loads(segcli(["evaluate", val, "-m", model, "--json", *extra]))["mIoU"])


def run(name: str, data: Path, val: Path, work: Path, epochs: int, reuse: bool, *train_args: str) -> dict:
    run_dir = work / "runs" / name
    best = run_dir / "weights" / "best.pt"
    t0 = time.perf_counter()
    if not (reuse and best.is_file()):
        segcli(["-q", "train", data, "--epochs", epochs, "--project", work / "runs", "--name", name, "--exist-ok",
                *train_args])
    train_s = time.perf_counter() - t0
    onnx, ts = work / f"{name}.onnx", work / f"{name}.torchscript"
    row = {"dataset": name, "train_s": train_s, "diff_onnx": export_diff(best, onnx), "diff_ts": export_diff(best, ts)}
    preds = {}
    for key, model, extra in (("pt32", best, ["--precision", "32"]), ("ptauto", best, []), ("onnx", onnx, [])):
        out = work / "pred" / name / key
        t0 = time.perf_counter()
        segcli(["-q", "predict", val / "images", "-m", model, "-o", out, *extra])
        row[f"predict_s_{key}"] = time.perf_counter() - t0
        preds[key] = masks(out)
        row[f"mIoU_{key}"] = miou(val, model, *extra)
    row["images"] = len(preds["onnx"])
    row["pixels"] = sum(m.size for m in preds["onnx"].values())
    row["eq_onnx_pt32"], row["worst_onnx_pt32"] = agreement(preds["onnx"], preds["pt32"])
    row["eq_onnx_ptauto"], row["worst_onnx_ptauto"] = agreement(preds["onnx"], preds["ptauto"])
    row["eq_pt32_ptauto"], _ = agreement(preds["pt32"], preds["ptauto"])  # what bf16 autocast alone changes
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--work", default="runs/bench/export_parity")
    ap.add_argument("--isbi-epochs", type=int, default=2)
    ap.add_argument("--camvid-epochs", type=int, default=1)
    ap.add_argument("--reuse", action="store_true", help="reuse models trained by an earlier run in --work")
    args = ap.parse_args()
    root = data_root(args.data_root)
    work = Path(args.work).resolve()
    isbi = isbi_split(root, work / "isbi")
    camvid = root / "camvid-dev"  # as it is: train/ to train on, val/ to predict
    rows = [
        run("isbi", isbi, isbi / "val", work, args.isbi_epochs, args.reuse),
        run("camvid", camvid, camvid / "val", work, args.camvid_epochs, args.reuse, "--ignore-index", "11"),
    ]
    print("\nexport verification (max |difference| vs PyTorch fp32, printed by `segcli export`)")
    print(f"{'dataset':8} {'onnx':>10} {'torchscript':>12}")
    for r in rows:
        print(f"{r['dataset']:8} {r['diff_onnx']:>10.3g} {r['diff_ts']:>12.3g}")
    print("\nmasks of the validation images: .onnx (ONNX Runtime) vs .pt (PyTorch)")
    print(f"{'dataset':8} {'images':>6} {'pixels':>9} {'=pt fp32':>9} {'worst img':>9} {'=pt auto':>9} {'worst img':>9}"
          f" {'pt32=auto':>9} {'mIoU pt32':>9} {'pt auto':>8} {'onnx':>8}")
    ok = True
    for r in rows:
        print(f"{r['dataset']:8} {r['images']:>6} {r['pixels']:>9} {r['eq_onnx_pt32']:>9.5%} {r['worst_onnx_pt32']:>9.4%}"
              f" {r['eq_onnx_ptauto']:>9.4%} {r['worst_onnx_ptauto']:>9.4%} {r['eq_pt32_ptauto']:>9.4%} {r['mIoU_pt32']:>9.4f}"
              f" {r['mIoU_ptauto']:>8.4f} {r['mIoU_onnx']:>8.4f}")
        ok &= r["eq_onnx_pt32"] >= TARGET and max(r["diff_onnx"], r["diff_ts"]) < 1e-4
    print("\npt auto = the default --precision (bf16 autocast on this CPU if it has AVX512-BF16/AMX, else fp32)")
    print(f"target: .onnx = .pt fp32 on >= {TARGET:.1%} of pixels, export difference < 1e-4: {'PASS' if ok else 'FAIL'}")
    (work / "export_parity.json").write_text(json.dumps(rows, indent=1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
