"""Benchmark data: the shared ISBI and CamVid-dev sets arranged as segcli datasets (symlinks, no copies).

ISBI split used throughout: train 0-19, validation 20-23, test 24-29.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_root(arg: str | None = None) -> Path:
    root = Path(arg) if arg else DEFAULT_ROOT
    if not (root / "isbi2012-membrane").is_dir():
        raise SystemExit(f"{root}: benchmark data not found; pass --data-root PATH (holding isbi2012-membrane/, camvid-dev/)")
    return root


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        os.symlink(src.resolve(), dst)


def isbi_split(root: Path, out: Path, train: range = range(0, 20), val: range = range(20, 24),
               test: range = range(24, 30), unlabeled: range | None = None) -> Path:
    """out/{train,val,test}/{images,masks} (+ out_unlabeled/) from isbi2012-membrane by image number."""
    src = root / "isbi2012-membrane"
    for part, idx in (("train", train), ("val", val), ("test", test)):
        for i in idx:
            _link(src / "images" / f"{i}.png", out / part / "images" / f"{i}.png")
            _link(src / "masks" / f"{i}.png", out / part / "masks" / f"{i}.png")
    if unlabeled is not None:
        for i in unlabeled:
            _link(src / "images" / f"{i}.png", out.with_name(out.name + "_unlabeled") / f"{i}.png")
    return out


def camvid_test(root: Path, out: Path) -> None:
    """out/test = camvid-dev/val/ (scored, never trained on) and out/classes.txt."""
    src = root / "camvid-dev"
    for p in (src / "val" / "images").iterdir():
        _link(p, out / "test" / "images" / p.name)
        _link(src / "val" / "masks" / f"{p.stem}.png", out / "test" / "masks" / f"{p.stem}.png")
    _link(src / "classes.txt", out / "classes.txt")
