"""int8 ONNX vs fp32 ONNX vs the .pt: `segcli predict` throughput and the mIoU the quantisation costs.

    python benchmarks/int8.py [--data-root DIR] [--work DIR] [--reuse] [--isbi-time 3m] [--camvid-time 4m]
    python benchmarks/int8.py --only isbi --isbi-model runs/train/exp/weights/best.pt   # a model of yours
    python benchmarks/int8.py --variants --reuse  # instead: ONNX Runtime's quantisation choices, timed

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
        segcli(["-q", "train", data, "--time", budget, "--project", work / "runs", "--name", name, "--exist-ok",
                *extra])
    return best


def export(best: Path, work: Path, name: str, test: Path) -> tuple[Path, Path, str]:
    """(fp32 .onnx, int8 .onnx, what `export --int8` reported)."""
    fp32, int8 = work / f"{name}.onnx", work / f"{name}.int8.onnx"
    segcli(["-q", "export", "-m", best, "-o", fp32])
    report = run(segcli_cmd("export", "--int8", "-m", best, "-o", int8, "--verify", test)).stderr
    return fp32, int8, report


def fp32_of(best: Path, work: Path, name: str) -> Path:
    fp32 = work / f"{name}.onnx"
    if not fp32.is_file():
        segcli(["-q", "export", "-m", best, "-o", fp32])
    return fp32


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


def variants(fp32: Path, calibration: list[Path], test: Path, batch: int = 4, rounds: int = 4) -> None:
    """ONNX Runtime's quantisation choices on one model: seconds per image (batch `batch`, the session's
    default threads, best of `rounds` alternating runs) and the share of test-image mask pixels equal
    to the fp32 model's. The choice `export --int8` makes is `qdq u8s8 per-channel, reduce_range`."""
    import tempfile

    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from segcli.data.discovery import eval_samples
    from segcli.infer.int8 import _predictor, _quiet_quantizer, calibration_feeds

    pred = _predictor(fp32)
    feeds = calibration_feeds(pred, calibration)
    tests = calibration_feeds(pred, [s.image for s in eval_samples(str(test))])

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"image": x} for x in feeds])

        def get_next(self):  # type: ignore[no-untyped-def]
            return next(self.it, None)

    u8s8 = dict(activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    tmp = Path(tempfile.mkdtemp(prefix="segcli-int8-variants-"))
    with _quiet_quantizer():
        quant_pre_process(str(fp32), str(tmp / "pre.onnx"), skip_symbolic_shape=True)
    convs = [n.name for n in onnx.load(str(tmp / "pre.onnx")).graph.node if n.op_type == "Conv"]
    qdq = QuantFormat.QDQ
    choices = {
        "qdq u8s8 per-channel": dict(quant_format=qdq, per_channel=True, **u8s8),
        "qdq u8s8 per-tensor": dict(quant_format=qdq, **u8s8),
        "qoperator u8s8 per-channel": dict(quant_format=QuantFormat.QOperator, per_channel=True, **u8s8),
        "qdq u8s8 per-channel, reduce_range": dict(quant_format=qdq, per_channel=True, reduce_range=True, **u8s8),
        "qdq s8s8 per-channel": dict(quant_format=qdq, per_channel=True),
        "qdq u8u8 per-channel": dict(quant_format=qdq, per_channel=True, activation_type=QuantType.QUInt8,
                                     weight_type=QuantType.QUInt8),
        "qdq u8s8 per-channel, first conv fp32": dict(quant_format=qdq, per_channel=True, nodes_to_exclude=convs[:1],
                                                      **u8s8),
        "qdq u8s8 per-channel, Resize fp32": dict(quant_format=qdq, per_channel=True, op_types_to_quantize=[
            "Conv", "Concat", "MaxPool", "Add", "Relu"], **u8s8),
    }
    files = {"fp32": fp32}
    with _quiet_quantizer():
        for name, kw in choices.items():
            files[name] = tmp / f"{len(files)}.onnx"
            quantize_static(str(tmp / "pre.onnx"), str(files[name]), Feeds(), **kw)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sessions = {k: ort.InferenceSession(str(f), opts, providers=["CPUExecutionProvider"]) for k, f in files.items()}
    same = [t for t in tests if t.shape == tests[0].shape][:batch]
    x = np.concatenate(same * (batch // len(same) + 1))[:batch]
    masks = {k: [s.run(None, {"image": t})[0] for t in tests] for k, s in sessions.items()}
    best = {k: float("inf") for k in sessions}
    for _ in range(rounds):
        for k, sess in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, {"image": x})
            best[k] = min(best[k], (time.perf_counter() - t0) / batch)
    print(f"\n| quantisation ({fp32.name}, batch {batch}, {x.shape[2]}x{x.shape[3]}) | s / image | vs fp32 "
          "| mask pixels = fp32 |")
    print("|---|---|---|---|")
    for k in sessions:
        agree = np.mean([np.mean(pred.output.labels_from_probs(a[0]) == pred.output.labels_from_probs(b[0]))
                         for a, b in zip(masks[k], masks["fp32"])])
        print(f"| {k} | {best[k]:.3f} | {best['fp32'] / best[k]:.2f}x | {agree:.2%} |")
    shutil.rmtree(tmp, ignore_errors=True)


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
              f"{r['sizes_MB']['fp32']:.1f} MB fp32, {r['sizes_MB']['int8']:.1f} MB int8: "
              f"{'PASS' if verdict else 'FAIL'}")
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
    ap.add_argument("--variants", action="store_true", help="instead: time ONNX Runtime's quantisation choices "
                    "(QDQ / QOperator, per-channel / per-tensor, u8s8 / s8s8 / u8u8, reduce_range, ops left fp32)")
    a = ap.parse_args()
    root = data_root(a.data_root)
    work = Path(a.work).resolve()
    rows = []
    if a.only in (None, "isbi"):
        isbi = isbi_split(root, work / "isbi")
        best = Path(a.isbi_model) if a.isbi_model else train("isbi", isbi, a.isbi_time, work, a.reuse)
        images = sorted((root / "isbi2012-membrane" / "images").glob("*.png"), key=lambda p: int(p.stem))
        if a.variants:
            variants(fp32_of(best, work, "isbi"), sorted((isbi / "train" / "images").iterdir()), isbi / "test")
        else:
            rows.append(measure("isbi", best, isbi / "test", images[: a.count or 30], work, a.repeats))
    if a.only in (None, "camvid"):
        camvid = root / "camvid-dev"
        best = Path(a.camvid_model) if a.camvid_model else train("camvid", camvid, a.camvid_time, work, a.reuse,
                                                                 "--ignore-index", "11")
        images = sorted((camvid / "val" / "images").iterdir())
        if a.variants:
            calibration = sorted((camvid / "train" / "images").iterdir())[::4]
            variants(fp32_of(best, work, "camvid"), calibration, camvid / "val")
        else:
            rows.append(measure("camvid", best, camvid / "val", images[: a.count or len(images)], work, a.repeats))
    if a.variants:
        return
    ok = report(rows)
    (work / "int8.json").write_text(json.dumps(rows, indent=1, default=str))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
