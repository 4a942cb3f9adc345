"""How well does the label-free quality estimate work, and what does `--quality` cost?

Trains segcli with its defaults (the quality estimator trains beside D and is calibrated on the
validation images when the run ends), or takes the runs trained before, then compares on held-out
images (never used for training, selection or calibration) every candidate signal with the
baselines: Spearman with the true per-region quality (mIoU; binary: foreground Dice) and pixel
accuracy, MAE of the calibrated estimate, AURC (risk = 1 - quality), and per-pixel AUROC of each
candidate's map against the wrongly labelled pixels.

- CamVid-dev: train/ minus every 10th image (validation: calibration and selection); test = val/
  (34 whole images), `--ignore-index 11`.
- ISBI 2012: train 0-19, validation 20-23, test = the 128x128 tiles of images 24-29 (96 regions;
  the full images are predicted, then scored tile by tile).

Candidates: max-softmax and entropy (the baselines; calibrated on the validation regions as the
checkpoint stores them), mean margin, the saved discriminator's mean score, flip agreement (a
second generator pass on the mirrored image), the estimator's 1 - mean error and expected
mIoU / Dice (each calibrated linearly on the same validation regions), and the shipped estimate
(a ridge regression of mean margin, 1 - mean error and expected mIoU stored in the checkpoint).
Then the wall time of `segcli predict` on the test images with and without `--quality` (.pt and
the exported .onnx): whole commands and per image (N images minus 1, so start-up cancels).

    python benchmarks/quality_estimation.py --seeds 0                 # ~20 min on a 2-core CPU
    python benchmarks/quality_estimation.py --only isbi --seeds 0,1 --reuse
    python benchmarks/quality_estimation.py --only camvid-full --gans flaw,lsgan --camvid-budget 8m
        # the flaw D as the estimator vs the estimator beside a real/fake D, on 101 unseen scenes
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import _link, camvid_split, data_root, isbi_split, segcli, wall, segcli_cmd  # noqa: E402

TILE = 128  # ISBI test regions
CANDIDATES = [  # (row label, region feature, pixel map, calibration: "ckpt" (stored), "fit" (on val))
    ("max-softmax (baseline)", "max_softmax", "1-max", "ckpt"),
    ("entropy (baseline)", "neg_entropy", "entropy", "ckpt"),
    ("mean margin", "margin", "1-margin", "fit"),
    ("D mean score", "d_score", "-D", "fit"),
    ("flip agreement (2x G)", "flip_agree", "flip", "fit"),
    ("estimator: 1 - mean error", "accuracy", "error", "fit"),
    ("estimator: expected quality", "expected", "error", "fit"),
    ("**shipped: ridge[margin, 1 - mean error, expected]**", "estimate", "error", "ckpt"),
]


def train(name: str, data: Path, budget: str, seed: int, work: Path, extra: list[str], reuse: bool) -> Path:
    """segcli train with its defaults for `budget` (epochs, or a time such as 8m), or the run trained
    before with --reuse; returns best.pt."""
    run = work / "runs" / "train" / name
    best = run / "weights" / "best.pt"
    if reuse and best.is_file():
        from segcli.checkpoint import Checkpoint

        if Checkpoint.load(run / "weights" / "last.pt").finished:
            print(f"  reusing {run}", file=sys.stderr)
            return best
    t0 = time.perf_counter()
    span = ["--epochs", budget] if budget.isdigit() else ["--time", budget]
    segcli(["train", data, *span, "--seed", seed, "--name", name, "--exist-ok", "--logger", "none",
            *extra], work)
    print(f"  trained {name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return best


def camvid_full_split(root: Path, out: Path, every: int = 10) -> Path:
    """camvid-full: train/ minus every `every`-th image (validation: calibration and selection);
    test = all of val/ (101 scenes)."""
    src = root / "camvid-full"
    for i, p in enumerate(sorted((src / "train" / "images").iterdir())):
        part = "val" if i % every == 0 else "train"
        _link(p, out / part / "images" / p.name)
        _link(src / "train" / "masks" / f"{p.stem}.png", out / part / "masks" / f"{p.stem}.png")
    for p in (src / "val" / "images").iterdir():
        _link(p, out / "test" / "images" / p.name)
        _link(src / "val" / "masks" / f"{p.stem}.png", out / "test" / "masks" / f"{p.stem}.png")
    _link(src / "classes.txt", out / "classes.txt")
    return out


class Maps:
    """A model's per-pixel maps of one image: probabilities, error, mirrored pass, D's score."""

    def __init__(self, best: Path) -> None:
        import torch

        from segcli.checkpoint import Checkpoint
        from dataclasses import replace

        from segcli.infer.options import InferenceOptions
        from segcli.infer.predictor import load_predictor
        from segcli.models import build_discriminator

        self.torch = torch
        self.ckpt = Checkpoint.load(best)
        # predict's own path: its device, precision and padding
        self.pred = load_predictor(best, InferenceOptions(quality=True))
        self.plain = replace(self.pred, quality=False)
        self.disc = None
        if self.ckpt.discriminator is not None:
            self.disc = build_discriminator(self.ckpt.model, self.ckpt.data)
            self.disc.load_state_dict(self.ckpt.discriminator)
            self.disc.eval()

    def __call__(self, image: Any) -> dict[str, Any]:
        import numpy as np

        from segcli.quality import class_probs, pixel_maps

        pred, out = self.pred, self.pred.output
        x = pred.preprocess(image)
        both = pred.probs([x])[0]
        c = out.channels
        probs, error = both[:c], both[c]
        flipped = np.flip(self.plain.probs([np.ascontiguousarray(x[:, :, ::-1])])[0], 2)
        labels = pred.labels(probs)
        pm = pixel_maps(probs, out.binary, entropy=True)
        maps = {"probs": probs, "labels": labels, "error": error, "1-max": 1 - pm["max_softmax"],
                "entropy": pm["entropy"], "1-margin": 1 - pm["margin"],
                "flip": 0.5 * np.abs(class_probs(probs, out.binary) - class_probs(flipped, out.binary)).sum(0),
                "flip_agree": (pred.labels(flipped) == labels).astype(np.float32)}
        maps["-D"] = -self.d_map(x, class_probs(probs, out.binary)) if self.disc is not None else np.zeros_like(error)
        return maps

    def d_map(self, x: Any, kprobs: Any) -> Any:
        torch = self.torch
        import torch.nn.functional as F

        with torch.inference_mode(), self.pred.backend.precision.autocast():
            z = torch.cat([torch.from_numpy(x), torch.from_numpy(kprobs)], 0)[None]
            s = self.disc(z).float()
            s = F.interpolate(s, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return s[0, 0].numpy()


def region_row(maps: dict[str, Any], truth: Any, win: tuple[int, int, int, int], info: Any, cal: Any) -> dict:
    from segcli.metrics import image_quality
    from segcli.quality import region_stats

    y0, y1, x0, x1 = win
    k = 2 if info.binary else info.num_classes
    lab = maps["labels"][y0:y1, x0:x1]
    stats = region_stats(maps["probs"][:, y0:y1, x0:x1], lab, maps["error"][y0:y1, x0:x1], k, info.binary, True)
    row = stats.features()
    row["d_score"] = -float(maps["-D"][y0:y1, x0:x1].mean())
    row["flip_agree"] = float(maps["flip_agree"][y0:y1, x0:x1].mean())
    row["estimate"] = cal.estimate(row)
    for b, c in cal.baselines.items():
        row[f"cal_{b}"] = c(row)
    row["quality"], row["accuracy_true"] = image_quality(lab, truth[y0:y1, x0:x1], k, info.binary)
    return row


def analyse(best: Path, data: Path, tiles: bool, seed: int) -> dict[str, Any]:
    """Validation regions (as training calibrated on them) and test regions, every candidate's score."""
    import numpy as np

    from segcli.data import discover
    from segcli.data.io import IGNORE, encode_mask, read_image, read_mask
    from segcli.train.estimator import REGIONS, windows

    m = Maps(best)
    info, cal = m.ckpt.data, m.pred.calibration
    splits = discover(data)
    out: dict[str, Any] = {"val": [], "test": [], "pixels": {}, "seconds": {}}
    crops = int(min(100, max(8, -(-REGIONS // max(1, len(splits.val))))))
    rng = np.random.default_rng(m.ckpt.train.seed)
    for part, samples in (("val", splits.val), ("test", splits.test)):
        t0 = time.perf_counter()
        for s in samples:
            image = read_image(s.image)
            truth = encode_mask(read_mask(s.mask), info.binary, info.ignore_index)
            maps = m(image)
            h, w = truth.shape
            if part == "val":
                wins = windows(h, w, crops, rng)
            elif tiles:
                wins = [(y, y + TILE, x, x + TILE) for y in range(0, h - TILE + 1, TILE) for x in range(0, w - TILE + 1, TILE)]
            else:
                wins = [(0, h, 0, w)]
            for win in wins:
                if (truth[win[0]:win[1], win[2]:win[3]] != IGNORE).mean() >= 0.1:
                    out[part].append(region_row(maps, truth, win, info, cal))
            if part == "test":
                valid = (truth != IGNORE).ravel()
                sel = np.random.default_rng(len(out["pixels"].get("wrong", []))).random(valid.size) < 0.25
                keep = valid & sel
                out["pixels"].setdefault("wrong", []).append((maps["labels"] != truth).ravel()[keep])
                for name in ("error", "1-max", "entropy", "1-margin", "flip", "-D"):
                    out["pixels"].setdefault(name, []).append(np.asarray(maps[name], np.float32).ravel()[keep])
        out["seconds"][part] = time.perf_counter() - t0
    out["pixels"] = {k: np.concatenate(v) for k, v in out["pixels"].items()}
    return out


def table(res: dict[str, Any]) -> list[dict[str, Any]]:
    import numpy as np

    from segcli.metrics import auroc, aurc, spearman
    from segcli.quality import fit_ridge

    val, test, pix = res["val"], res["test"], res["pixels"]
    q = np.array([r["quality"] for r in test])
    acc = np.array([r["accuracy_true"] for r in test])
    rows = []
    for label, feat, pmap, how in CANDIDATES:
        if pmap == "-D" and not np.any(pix[pmap]):  # no real/fake D in this run (--gan flaw or none)
            continue
        raw = np.array([r[feat] for r in test])
        if how == "fit":
            c = fit_ridge(val, [r["quality"] for r in val], (feat,))
            est = np.array([c(r) for r in test])
        else:
            est = np.array([r[f"cal_{feat}"] if f"cal_{feat}" in r else r[feat] for r in test])
        rows.append({"candidate": label, "rho_quality": spearman(raw, q), "rho_acc": spearman(raw, acc),
                     "mae": float(np.mean(np.abs(est - q))), "aurc": aurc(raw, 1 - q),
                     "pixel_auroc": auroc(pix[pmap], pix["wrong"])})
    return rows


def timing(best: Path, data: Path, work: Path, reps: int) -> dict[str, float]:
    """Wall seconds of `segcli predict` on the test images: whole commands, and per image (N minus 1)."""
    test = sorted((data / "test" / "images").iterdir())
    onnx = work / f"{best.parent.parent.name}.onnx"
    segcli(["export", "--model", best, "-o", onnx], work)
    out: dict[str, float] = {}
    for model in (best, onnx):
        for q in ([], ["--quality"]):
            key = f"{model.suffix[1:]}{' --quality' if q else ''}"
            cmd = lambda imgs: segcli_cmd("predict", *imgs, "--model", model, "-o", work / "pred_out", *q)  # noqa: E731
            full = min(wall(cmd(test), cwd=work) for _ in range(reps))
            one = min(wall(cmd(test[:1]), cwd=work) for _ in range(reps))
            out[key] = full
            out[key + " per image"] = (full - one) / max(1, len(test) - 1)
    return out


def report(name: str, seed: int, res: dict[str, Any], rows: list[dict[str, Any]], times: dict[str, float]) -> list[str]:
    import numpy as np

    q = np.array([r["quality"] for r in res["test"]])
    target = "Dice" if name == "isbi" else "mIoU"
    lines = [f"**{name}, seed {seed}**: {len(res['test'])} test regions (true {target} mean {q.mean():.3f}, sd "
             f"{q.std():.3f}), calibrated on {len(res['val'])} validation regions", "",
             f"| candidate | Spearman {target} | Spearman pixel acc | MAE | AURC | pixel AUROC |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['candidate']} | {r['rho_quality']:.3f} | {r['rho_acc']:.3f} | {r['mae']:.3f} | "
                     f"{r['aurc']:.4f} | {r['pixel_auroc']:.3f} |")
    from segcli.metrics import aurc

    lines.append(f"| (perfect ranking) | 1 | | 0 | {aurc(q, 1 - q):.4f} | |")
    base = [r for r in rows if "(baseline)" in r["candidate"]]
    ship = rows[-1]
    best_q, best_a = max(r["rho_quality"] for r in base), max(r["rho_acc"] for r in base)
    ent_auroc = next(r["pixel_auroc"] for r in rows if r["candidate"].startswith("entropy"))
    floor = f"at least 0.6 ({'met' if ship['rho_quality'] >= 0.6 else 'NOT met'}), and " if name == "camvid" else ""
    lines += ["", f"targets: Spearman {ship['rho_quality']:.3f} {floor}vs best baseline {best_q:.3f} + 0.05 "
              f"({'met' if ship['rho_quality'] >= best_q + 0.05 else 'NOT met'}); pixel accuracy {ship['rho_acc']:.3f} "
              f"vs {best_a:.3f} + 0.05 ({'met' if ship['rho_acc'] >= best_a + 0.05 else 'NOT met'}); error-map AUROC "
              f"{ship['pixel_auroc']:.3f} vs entropy {ent_auroc:.3f} ({'met' if ship['pixel_auroc'] > ent_auroc else 'NOT met'})"]
    if times:
        cost = {k: times[f"{k} --quality"] / times[k] - 1 for k in ("pt", "onnx")}
        per = {k: times[f"{k} --quality per image"] / times[f"{k} per image"] - 1 for k in ("pt", "onnx")}
        lines.append(f"cost of --quality on {len(res['test']) if name != 'isbi' else 6} test images: .pt "
                     f"{times['pt']:.1f} s -> {times['pt --quality']:.1f} s (+{100 * cost['pt']:.0f}%; per image "
                     f"+{100 * per['pt']:.0f}%), .onnx {times['onnx']:.1f} s -> {times['onnx --quality']:.1f} s "
                     f"(+{100 * cost['onnx']:.0f}%; per image +{100 * per['onnx']:.0f}%)")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default=None, help="Folder holding isbi2012-membrane/ and camvid-dev/.")
    ap.add_argument("--work", default="runs/bench/quality_estimation", help="Where runs, splits and outputs go.")
    ap.add_argument("--only", choices=["camvid", "isbi", "camvid-full"], default=None,
                    help="camvid-full (not in the default run): trained on camvid-full/train minus every 10th "
                         "image (validation), scored on all 101 images of camvid-full/val")
    ap.add_argument("--gans", default="flaw", help="Comma-separated --gan values, each a separate run (e.g. flaw,lsgan: "
                    "the flaw D as the estimator vs the estimator trained beside a real/fake D).")
    ap.add_argument("--seeds", default="0", help="Comma-separated training seeds, each a separate run.")
    ap.add_argument("--camvid-budget", default="8m", help="Training budget: a time (8m) or a number of epochs.")
    ap.add_argument("--isbi-budget", default="4m", help="Training budget: a time (4m) or a number of epochs.")
    ap.add_argument("--reuse", action="store_true", help="Take the finished runs already in --work.")
    ap.add_argument("--timing-reps", type=int, default=2, help="Repeats of each timed predict (0: no timing).")
    ap.add_argument("--json", default=None, help="Also write every number to this JSON file.")
    a = ap.parse_args()
    root, work = data_root(a.data_root), Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    sets = [("camvid", camvid_split, a.camvid_budget, ["--ignore-index", "11"], False),
            ("isbi", isbi_split, a.isbi_budget, [], True),
            ("camvid-full", camvid_full_split, a.camvid_budget, ["--ignore-index", "11"], False)]
    lines, dump = [], {}
    for name, split, budget, extra, tiles in sets:
        if a.only != name and (a.only is not None or name == "camvid-full"):
            continue
        data = split(root, work / name)
        for seed in (int(s) for s in a.seeds.split(",")):
            for gan in a.gans.split(","):
                run = f"{name}_{gan}_s{seed}"
                best = train(run, data, budget, seed, work, [*extra, "--gan", gan], a.reuse)
                res = analyse(best, data, tiles, seed)
                rows = table(res)
                times = timing(best, data, work, a.timing_reps) if a.timing_reps else {}
                lines += report(f"{name} --gan {gan}", seed, res, rows, times)
                print("\n".join(report(f"{name} --gan {gan}", seed, res, rows, times)), flush=True)
                dump[run] = {"rows": rows, "times": times, "test": res["test"], "val_regions": len(res["val"])}
    if a.json:
        Path(a.json).write_text(json.dumps(dump, indent=1))


if __name__ == "__main__":
    main()
