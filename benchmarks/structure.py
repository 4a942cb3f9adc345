"""Does the adversarial term change the shape of the masks? ISBI membranes scored as the 2012
challenge ranked them, beside mIoU.

Adversarial training for segmentation (Luc et al. 2016) was proposed for "higher-order
consistency": masks whose shapes look real, which per-pixel losses and mIoU do not reward. On
membranes the shape that matters is closed cell outlines: one gap merges two cells, a stray blob
splits one. The challenge's metric counts exactly that: the Rand F-score of the cells (connected
components of the cell class, scored on the true cells' pixels; Arganda-Carreras et al. 2015).

    python benchmarks/structure.py --seeds 0,1               # GAN and --gan none, 6m each per seed
    python benchmarks/structure.py --runs A B --labels gan none  # score runs trained before

Same split as quality.py: train 0-19, validation 20-23, test 24-29.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from benchmarks.harness import data_root, isbi_split, run_segcli  # noqa: E402


def cells(mask: np.ndarray) -> np.ndarray:
    """Connected components of the cell class (4-connected: a diagonal gap in a membrane is no leak)."""
    import cv2

    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)[1]


def rand_f(true_seg: np.ndarray, pred_seg: np.ndarray) -> float:
    """Foreground-restricted Rand F-score (skimage's adapted_rand_error, as 1 - error)."""
    keep = true_seg > 0
    t, p = true_seg[keep].astype(np.int64), pred_seg[keep].astype(np.int64)
    joint = np.unique(t * (p.max() + 1) + p, return_counts=True)[1].astype(np.float64)
    sizes_t = np.unique(t, return_counts=True)[1].astype(np.float64)
    sizes_p = np.unique(p, return_counts=True)[1].astype(np.float64)
    both = (joint ** 2).sum()
    precision, recall = both / (sizes_p ** 2).sum(), both / (sizes_t ** 2).sum()
    return 2 * precision * recall / (precision + recall)


def score(model_path: Path, test: Path) -> dict[str, float]:
    import cv2

    import segcli
    from segcli.metrics import ConfusionMatrix

    model = segcli.load(model_path)
    cm, rand, counts, membrane = ConfusionMatrix(2), [], [], np.zeros(2)
    for image in sorted((test / "images").iterdir()):
        truth = (cv2.imread(str(test / "masks" / image.name), cv2.IMREAD_GRAYSCALE) > 127).astype(np.uint8)
        pred = model.predict(image)
        cm.update(pred, truth)
        membrane += ((pred == 0).sum(), (truth == 0).sum())
        true_seg, pred_seg = cells(truth), cells(pred)
        rand.append(rand_f(true_seg, pred_seg))
        counts.append((pred_seg.max(), true_seg.max()))
    found, true = np.sum(counts, axis=0)
    return {"mIoU": float(cm.compute()["mIoU"]), "rand_f": float(np.mean(rand)), "cells": int(found),
            "true_cells": int(true), "membrane": float(membrane[0] / membrane[1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root")
    ap.add_argument("--time", default="6m")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--runs", nargs="*", help="score these run folders instead of training")
    ap.add_argument("--labels", nargs="*", help="a label per --runs entry")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="segcli-structure-"))
    data = isbi_split(data_root(a.data_root), work / "isbi")
    runs: list[tuple[str, Path]] = []
    if a.runs:
        runs = [(label, Path(r)) for label, r in zip(a.labels or a.runs, a.runs)]
    else:
        for seed in (int(s) for s in a.seeds.split(",")):
            for label, extra in (("GAN (defaults)", []), ("--gan none", ["--gan", "none"])):
                r = run_segcli(f"s{seed}_{extra[-1] if extra else 'gan'}", data, a.time, ["--seed", str(seed), *extra], work)
                runs.append((f"{label}, seed {seed}", work / r["run"]))
                print(f"trained {runs[-1][0]}: test mIoU {r['mIoU']:.4f}", flush=True)
    print("\n| model | test mIoU | Rand F-score (cells) | cells found / true | membrane pixels / true |\n|---|---|---|---|---|")
    for label, run in runs:
        s = score(run / "weights" / "best.pt", data / "test")
        print(f"| {label} | {s['mIoU']:.4f} | {s['rand_f']:.4f} | {s['cells']} / {s['true_cells']} | {s['membrane']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
