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


def score_test(model, data: Path, info, mean, std, device: str = "cpu") -> dict:
    """A bare model's full-resolution bf16 predictions on DATA/test, scored with segcli's own
    confusion-matrix code (so a peer and segcli are measured the same way)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from segcli.data import discover
    from segcli.data.io import encode_mask, read_image, read_mask, to_float
    from segcli.metrics import ConfusionMatrix

    dev = torch.device(device)
    model.eval()
    cm = ConfusionMatrix(2 if info.binary else info.num_classes)
    with torch.inference_mode():
        for s in discover(data).test:
            x = (to_float(read_image(s.image)) - mean) / std
            y = encode_mask(read_mask(s.mask), info.binary, info.ignore_index)
            h, w = y.shape
            xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).float()[None].to(dev)
            xt = F.pad(xt, (0, (-w) % 32, 0, (-h) % 32))  # the encoder's stride
            with torch.autocast(dev.type, torch.bfloat16):
                pred = model(xt).float()[0, :, :h, :w].argmax(0).cpu().numpy()
            cm.update(pred, y)
    return cm.compute()


def peer_batch(xs: list, ys: list, crop: int, bs: int, rng, gray: bool, ignore: int):
    """The peer's plain sampling: random crops (padding small images with `ignore`) and flips,
    vertical ones too for gray images; (N,C,H,W) float and (N,H,W) long tensors."""
    import numpy as np
    import torch

    bx, by = [], []
    for _ in range(bs):
        i = int(rng.integers(len(xs)))
        x, y = xs[i], ys[i]
        h, w = y.shape
        ph, pw = max(0, crop - h), max(0, crop - w)
        if ph or pw:
            x = np.pad(x, ((0, ph), (0, pw), (0, 0)))
            y = np.pad(y, ((0, ph), (0, pw)), constant_values=ignore)
            h, w = y.shape
        t, l = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
        x, y = x[t : t + crop, l : l + crop], y[t : t + crop, l : l + crop]
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        if gray and rng.random() < 0.5:
            x, y = x[::-1], y[::-1]
        bx.append(np.ascontiguousarray(x.transpose(2, 0, 1)))
        by.append(np.ascontiguousarray(y))
    return torch.from_numpy(np.stack(bx)).float(), torch.from_numpy(np.stack(by)).long()
