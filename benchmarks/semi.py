"""Semi-supervised benchmark: labeled images alone vs the same plus unlabeled ones, same budget.

  - ISBI: 4 labeled (0-3) + 16 unlabeled (4-19); validation 20-23; test 24-29.
  - CamVid-dev: a quarter of train/ labeled, the rest unlabeled (every 10th of the labeled part
    used for selection would leave too few, so validation = 8 images of the unlabeled rest,
    which the semi run also sees without labels); test = val/.

    python benchmarks/semi.py                       # 4m ISBI, 5m CamVid per run (~20 min)
    python benchmarks/semi.py --time 30s --only isbi  # smoke run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import _link, camvid_test, data_root, isbi_split  # noqa: E402
from quality import run_segcli  # noqa: E402


def camvid_quarter(root: Path, out: Path) -> tuple[Path, Path]:
    src = root / "camvid-dev"
    names = sorted(p.name for p in (src / "train" / "images").iterdir())
    unl = out.with_name(out.name + "_unlabeled")
    n_val = 0
    for i, name in enumerate(names):
        stem = Path(name).stem
        if i % 4 == 0:
            part = "train"
        elif n_val < 8 and i % 4 == 2:
            part, n_val = "val", n_val + 1
        else:
            _link(src / "train" / "images" / name, unl / name)
            continue
        _link(src / "train" / "images" / name, out / part / "images" / name)
        _link(src / "train" / "masks" / f"{stem}.png", out / part / "masks" / f"{stem}.png")
    camvid_test(root, out)
    return out, unl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root")
    ap.add_argument("--isbi-time", default="4m")
    ap.add_argument("--camvid-time", default="5m")
    ap.add_argument("--only", choices=["isbi", "camvid"])
    ap.add_argument("--extra", default="", help="extra options for the semi-supervised run")
    a = ap.parse_args()
    root = data_root(a.data_root)
    work = Path(tempfile.mkdtemp(prefix="segcli-semi-"))
    lines = ["| data | labeled only: test mIoU | + unlabeled: test mIoU | gain | budget |", "|---|---|---|---|---|"]
    jobs = []
    if a.only in (None, "isbi"):
        data = isbi_split(root, work / "isbi", train=range(0, 4), unlabeled=range(4, 20))
        jobs.append(("ISBI 4 labeled + 16 unlabeled", data, work / "isbi_unlabeled", a.isbi_time, []))
    if a.only in (None, "camvid"):
        data, unl = camvid_quarter(root, work / "camvid")
        jobs.append(("CamVid-dev 1/4 labeled", data, unl, a.camvid_time, ["--ignore-index", "11"]))
    for name, data, unl, budget, extra in jobs:
        tag = name.split()[0].lower()
        sup = run_segcli(f"{tag}_sup", data, budget, extra, work)
        semi = run_segcli(f"{tag}_semi", data, budget, [*extra, "--unlabeled", str(unl), *a.extra.split()], work)
        lines.append(f"| {name} | {sup['mIoU']:.3f} | {semi['mIoU']:.3f} | {semi['mIoU'] - sup['mIoU']:+.3f} | {budget} |")
        print(lines[-1], flush=True)
    print("\n" + "\n".join(lines))
    print(f"\nruns kept in {work}")


if __name__ == "__main__":
    main()
