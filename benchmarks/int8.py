"""int8 ONNX vs fp32 ONNX vs the .pt: `segcli predict` throughput and the mIoU the quantisation costs.

    python benchmarks/int8.py [--data-root DIR] [--work DIR] [--reuse] [--isbi-time 3m] [--camvid-time 4m]
    python benchmarks/int8.py --only isbi --isbi-model runs/train/exp/weights/best.pt   # a model of yours

Trains a short model per dataset (ISBI: train 0-19, validation 20-23; CamVid-dev: train/, its own
val/), or takes `--isbi-model` / `--camvid-model`; exports it as fp32 ONNX (`segcli export`) and as
int8 ONNX (`segcli export --int8`, calibrated on the run's training images, verified on the test
images: ISBI 24-29, CamVid-dev val/); then, for the .pt (`--precision auto`, and `bf16` forced),
the fp32 .onnx and the int8 .onnx:

- steady-state images/s of `segcli predict FOLDER` in a new process: (N - 1) / (t_N - t_1), so
  start-up and model loading cancel out (ISBI 512x512: the 30 images; CamVid 480x360: val/);
  the runs of the models alternate, `--repeats` times, and the best of each is kept;
- mIoU of `segcli evaluate` on the test images (the .pt in fp32).

Targets: int8 >= 1.8x the fp32 .onnx and >= the .pt bf16 path; mIoU within 0.01 of fp32.
Exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import data_root, isbi_split, run, segcli, segcli_cmd, wall  # noqa: E402

SPEED_TARGET, LOSS_TARGET = 1.8, 0.01


def train(name: str, data: Path, budget: str, work: Path, reuse: bool, *extra: str) -> Path:
    best = work / "runs" / name / "weights" / "best.pt"
    if not (reuse and best.is_file()):
        segcli(["-q", "train", data, "--time", budget, "--project", work / "runs", "--name", name, "--exist-ok", *extra])
    return best


def export(best: Path, work: Path, name: str, test: Path) -> tuple[Path, Path, str]:
    """(fp32 .onnx, int8 .onnx, what `export --int8` reported)."""
    fp32, int8 = work / f"{name}.onnx", work / f"{name}.int8.onnx"
    segcli(["-q", "export", "-m", best, "-o", fp32])
    report = run(segcli_cmd("export", "--int8", "-m", best, "-o", int8, "--verify", test)).stderr
    return fp32, int8, report


def folders(images: list[Path], work: Path) -> tuple[Path, Path]:
    """A folder of N copies (real files: predict skips the same file twice) and one of 1 image."""
    many, one = work / "many", work / "one"
    for d in (many, one):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    for i, p in enumerate(images):
        shutil.copyfile(p, many / f"{i:03d}{p.suffix}")
    shutil.copyfile(images[0], one / f"000{images[0].suffix}")
    return many, one


def throughput(models: dict[str, tuple[Path, list[str]]], many: Path, one: Path, n: int, repeats: int,
               work: Path) -> dict[str, float]:
    """Best steady-state images/s of each model over `repeats` alternating rounds."""
    best: dict[str, float] = {}
    for r in range(repeats):
        for key, (model, extra) in models.items():
            out = work / "out" / key
            shutil.rmtree(out, ignore_errors=True)
            t1 = wall(segcli_cmd("-q", "predict", one, "-m", model, "-o", f"{out}1", "--overwrite", *extra))
            tn = wall(segcli_cmd("-q", "predict", many, "-m", model, "-o", f"{out}n", "--overwrite", *extra))
            best[key] = max(best.get(key, 0.0), (n - 1) / max(tn - t1, 1e-9))
            print(f"  round {r + 1} {key}: 1 image {t1:.2f} s, {n} images {tn:.2f} s", flush=True)
    return best


def miou(test: Path, model: Path, *extra: str) -> float:
    return float(json.loads(segcli(["evaluate", test, "-m", model, "--json", *extra]))["mIoU"])


def measure(name: str, best: Path, test: Path, images: list[Path], work: Path, repeats: int) -> dict:
    t0 = time.perf_counter()
    fp32, int8, report = export(best, work, name, test)
    export_s = time.perf_counter() - t0
    many, one = folders(images, work / f"{name}_speed")
    models = {"pt auto": (best, []), "pt bf16": (best, ["--precision", "bf16"]), "onnx fp32": (fp32, []),
              "onnx int8": (int8, [])}
    ips = throughput(models, many, one, len(images), repeats, work / f"{name}_speed")
    scores = {"pt fp32": miou(test, best, "--precision", "32"), "onnx fp32": miou(test, fp32),
              "onnx int8": miou(test, int8)}
    info = json.loads(segcli(["info", int8, "--json"]))
    return {"dataset": name, "images/s": ips, "mIoU": scores, "export_int8_s": export_s,
            "int8_card": info["export"]["quantization"], "estimator_dtype": (info.get("quality_estimator") or {}).get(
                "weights_dtype"), "export_report": report.strip().splitlines()[-3:],
            "sizes_MB": {"fp32": fp32.stat().st_size / 1e6, "int8": int8.stat().st_size / 1e6}}


def report(rows: list[dict]) -> bool:
    ok = True
    print("\n| dataset | model | images/s | vs onnx fp32 | mIoU (test) |")
    print("|---|---|---|---|---|")
    for r in rows:
        ips, m = r["images/s"], r["mIoU"]
        for key in ("pt auto", "pt bf16", "onnx fp32", "onnx int8"):
            score = m.get(key, m["pt fp32"] if key.startswith("pt") else None)
            print(f"| {r['dataset']} | {key} | {ips[key]:.2f} | {ips[key] / ips['onnx fp32']:.2f}x | {score:.4f} |")
        speed = ips["onnx int8"] / ips["onnx fp32"]
        loss = m["onnx fp32"] - m["onnx int8"]
        beats_pt = ips["onnx int8"] >= max(ips["pt bf16"], ips["pt auto"])
        verdict = speed >= SPEED_TARGET and beats_pt and loss <= LOSS_TARGET
        ok &= verdict
        print(f"\n{r['dataset']}: int8 / fp32 .onnx = {speed:.2f}x (target >= {SPEED_TARGET}x); int8 vs the .pt: "
              f"{'faster' if beats_pt else 'SLOWER'}; mIoU loss {loss:+.4f} (target <= {LOSS_TARGET}); "
              f"estimator {r['estimator_dtype']}; export --int8 took {r['export_int8_s']:.0f} s; files "
              f"{r['sizes_MB']['fp32']:.1f} MB fp32, {r['sizes_MB']['int8']:.1f} MB int8: {'PASS' if verdict else 'FAIL'}")
        print("  export --int8 said: " + " | ".join(r["export_report"]))
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--work", default="runs/bench/int8")
    ap.add_argument("--only", choices=("isbi", "camvid"), default=None)
    ap.add_argument("--isbi-time", default="3m", help="training budget of the ISBI model")
    ap.add_argument("--camvid-time", default="4m", help="training budget of the CamVid-dev model")
    ap.add_argument("--isbi-model", default=None, help="use this checkpoint instead of training one")
    ap.add_argument("--camvid-model", default=None)
    ap.add_argument("--repeats", type=int, default=2, help="alternating rounds of the speed runs (best kept)")
    ap.add_argument("--count", type=int, default=0, help="images per speed run (default: ISBI's 30, CamVid's val)")
    ap.add_argument("--reuse", action="store_true", help="reuse models trained by an earlier run in --work")
    a = ap.parse_args()
    root = data_root(a.data_root)
    work = Path(a.work).resolve()
    rows = []
    if a.only in (None, "isbi"):
        isbi = isbi_split(root, work / "isbi")
        best = Path(a.isbi_model) if a.isbi_model else train("isbi", isbi, a.isbi_time, work, a.reuse)
        images = sorted((root / "isbi2012-membrane" / "images").glob("*.png"), key=lambda p: int(p.stem))
        rows.append(measure("isbi", best, isbi / "test", images[: a.count or 30], work, a.repeats))
    if a.only in (None, "camvid"):
        camvid = root / "camvid-dev"
        best = Path(a.camvid_model) if a.camvid_model else train("camvid", camvid, a.camvid_time, work, a.reuse,
                                                                 "--ignore-index", "11")
        images = sorted((camvid / "val" / "images").iterdir())
        rows.append(measure("camvid", best, camvid / "val", images[: a.count or len(images)], work, a.repeats))
    ok = report(rows)
    (work / "int8.json").write_text(json.dumps(rows, indent=1, default=str))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
