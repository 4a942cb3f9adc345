"""What the benchmark scripts share: the data, the CLI, timing, models, scoring and the peer.

- data: `data_root` finds the shared ISBI / CamVid-dev copies; `isbi_split`, `camvid_split`,
  `camvid_quarter` and `camvid_test` arrange them as segcli datasets (symlinks, no copies).
  ISBI split used throughout: train 0-19, validation 20-23, test 24-29.
- the CLI: `segcli` (stdout of `python -m segcli ARGS`), `run` (any command, checked), `wall`
  (its wall time), `spawn` (a long-running one, e.g. `segcli serve`), `run_segcli` (train under a
  budget, then evaluate on DATA/test).
- models: `make_checkpoint` (a default-architecture model with random weights, for speed and
  memory benchmarks: they do not depend on the weights' values), `load_generator`.
- scoring and the peer: `score_test` (a bare model on DATA/test, scored with segcli's own
  confusion-matrix code), `peer_batch` and `run_peer` (segmentation_models_pytorch's
  Unet-resnet18 in a plain loop: what users would pick instead of segcli).

Only the standard library is imported at module level, so every script's --help stays fast.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]  # the repository root
DEFAULT_ROOT = ROOT.parent / "shared" / "data"
SEGCLI = [sys.executable, "-m", "segcli"]


# ---------------------------------------------------------------------------- data

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
    """out/test = camvid-full/val/ minus camvid-dev/val/ (67 street scenes never seen in development:
    scored, never chosen on), or camvid-dev/val/ where camvid-full/ is absent; and out/classes.txt."""
    src = root / "camvid-dev"
    full = root / "camvid-full" / "val"
    dev_val = {p.name for p in (src / "val" / "images").iterdir()}
    test = full if full.is_dir() else src / "val"
    for p in (test / "images").iterdir():
        if test == full and p.name in dev_val:
            continue
        _link(p, out / "test" / "images" / p.name)
        _link(test / "masks" / f"{p.stem}.png", out / "test" / "masks" / f"{p.stem}.png")
    _link(src / "classes.txt", out / "classes.txt")


def camvid_split(root: Path, out: Path, every: int = 10) -> Path:
    """CamVid-dev: train on train/ with every `every`-th image carved out for selection; test = val/."""
    src = root / "camvid-dev"
    names = sorted(p.name for p in (src / "train" / "images").iterdir())
    for i, name in enumerate(names):
        part = "val" if i % every == 0 else "train"
        stem = Path(name).stem
        _link(src / "train" / "images" / name, out / part / "images" / name)
        _link(src / "train" / "masks" / f"{stem}.png", out / part / "masks" / f"{stem}.png")
    camvid_test(root, out)
    return out


def camvid_quarter(root: Path, out: Path) -> tuple[Path, Path]:
    """CamVid-dev with a quarter of train/ labeled and the rest in out_unlabeled/; validation =
    8 images of the unlabeled rest (with masks); test = val/. Returns (data, unlabeled folder)."""
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


# ---------------------------------------------------------------------------- commands

class CommandFailed(SystemExit):
    """A command exited with an unexpected code; `stderr` holds what it said."""

    def __init__(self, cmd: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"failed ({returncode}): {' '.join(cmd)}\n{stderr[-3000:]}")
        self.cmd, self.returncode, self.stderr = list(cmd), returncode, stderr


def _env() -> dict[str, str]:
    """This repository's segcli first, whether or not it is installed and whatever the cwd."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def run(cmd: Sequence[object], cwd: Optional[Path] = None, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
    """Run a command, capturing its output; CommandFailed unless it exits with a code in `ok`."""
    cmd = [str(c) for c in cmd]
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=_env())
    if r.returncode not in ok:
        raise CommandFailed(cmd, r.returncode, r.stderr)
    return r


def segcli_cmd(*args: object) -> list[str]:
    return [*SEGCLI, *map(str, args)]


def segcli(args: Sequence[object], cwd: Optional[Path] = None) -> str:
    """The stdout of `python -m segcli ARGS` (CommandFailed when it fails)."""
    return run(segcli_cmd(*args), cwd).stdout


def spawn(cmd: Sequence[object], cwd: Optional[Path] = None, **popen: Any) -> subprocess.Popen:
    """Start a long-running command (e.g. `segcli serve`) with this repository's segcli first."""
    return subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=_env(), **popen)


def wall(cmd: Sequence[object], ok: tuple[int, ...] = (0,), cwd: Optional[Path] = None) -> float:
    """Wall seconds of one command in a new process, start-up included (CommandFailed when it fails)."""
    t0 = time.perf_counter()
    run(cmd, cwd, ok)
    return time.perf_counter() - t0


def run_segcli(name: str, data: Path, budget: str, extra: list[str], work: Path) -> dict:
    """Train, then score best.pt on data/test. budget: a --time duration ("6m") or "200ep".

    Returns `segcli evaluate --json`'s result plus the training wall `seconds` and the `run`
    folder (relative to `work`, where the runs go)."""
    flags = ["--epochs", budget[:-2]] if budget.endswith("ep") else ["--time", budget]
    t0 = time.perf_counter()
    run_dir = segcli(["train", str(data), *flags, "--name", name, "--exist-ok", *extra], work).strip()
    seconds = time.perf_counter() - t0
    result = json.loads(segcli(["evaluate", str(data / "test"), "--model", f"{run_dir}/weights/best.pt", "--json"], work))
    result["seconds"], result["run"] = seconds, run_dir
    metrics = Path(work) / run_dir / "metrics.csv" if not Path(run_dir).is_absolute() else Path(run_dir) / "metrics.csv"
    rows = list(csv.DictReader(metrics.read_text().splitlines())) if metrics.is_file() else []
    result["epochs"] = len(rows) if metrics.is_file() else None
    vals = [float(r["val_mIoU"]) for r in rows if r.get("val_mIoU") not in (None, "", "nan")]
    result["val_mIoU"] = max(vals) if vals else None  # what chose best.pt: the one figure a choice may use
    return result


# ---------------------------------------------------------------------------- models

def make_checkpoint(path: Path, in_channels: int = 1, img_size: int = 256, binary: bool = True) -> Path:
    """A default-architecture checkpoint with random weights (seed 0), as training writes them.

    `img_size`: the training patch it claims (predict's automatic tiling follows it; 0 = none)."""
    import torch

    from segcli.checkpoint import Checkpoint
    from segcli.config import DataInfo, ModelConfig, TrainConfig
    from segcli.models import build_generator

    torch.manual_seed(0)
    info = DataInfo(num_classes=2, in_channels=in_channels, mean=[0.5] * in_channels, std=[0.25] * in_channels,
                    binary=binary)
    mcfg = ModelConfig()
    gen = build_generator(mcfg, info).eval()
    Checkpoint(train=TrainConfig(img_size=img_size), model=mcfg, data=info, output=gen.output,
               generator=gen.state_dict()).save(path)
    return path


def load_generator(path: Path) -> tuple[Any, Any]:
    """(the generator in eval mode, its segcli.checkpoint.Checkpoint) from a .pt file."""
    from segcli.checkpoint import Checkpoint

    ckpt = Checkpoint.load(path)
    return ckpt.build_generator(), ckpt


# ---------------------------------------------------------------------------- scoring and the peer

def score_test(model: Any, data: Path, info: Any, mean: Any, std: Any, device: str = "cpu") -> dict:
    """A bare model's full-resolution bf16 predictions on DATA/test, scored with segcli's own
    confusion-matrix code (so a peer and segcli are measured the same way).

    A segcli generator is padded and decoded as its `output` says; a peer (K logits, no
    `output`) as a softmax model with stride 32."""
    import torch
    import torch.nn.functional as F

    from segcli.data import discover
    from segcli.data.io import encode_mask, normalize, read_image, read_mask
    from segcli.metrics import ConfusionMatrix
    from segcli.models import OutputSpec

    k = 2 if info.binary else info.num_classes
    spec = getattr(model, "output", None) or OutputSpec(False, k, 32)
    dev = torch.device(device)
    model.eval()
    cm = ConfusionMatrix(k)
    with torch.inference_mode():
        for s in discover(data).test:
            x = normalize(read_image(s.image), mean, std)
            y = encode_mask(read_mask(s.mask), info.binary, info.ignore_index)
            h, w = y.shape
            ph, pw = spec.padding(h, w)
            xt = F.pad(torch.from_numpy(x)[None].to(dev), (0, pw, 0, ph))
            with peer_autocast(dev.type):
                logits = model(xt).float()
            pred = spec.labels(logits[:, :, :h, :w])[0].cpu().numpy()
            cm.update(pred, y)
    return cm.compute()


def peer_autocast(device_type: str) -> Any:
    """bf16 autocast where bf16 is fast (a GPU, or a CPU with AMX / AVX512-BF16); fp32 elsewhere:
    on an AVX2-only CPU bf16 convolutions run 10-100x slower than fp32, which would starve the peer."""
    import torch

    from segcli.device import select_precision

    return select_precision("auto", torch.device(device_type)).autocast()


def peer_batch(xs: list, ys: list, crop: int, bs: int, rng: Any, gray: bool, ignore: int) -> tuple[Any, Any]:
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


def run_peer(data: Path, budget_s: float, ignore: int | None, seed: int = 0) -> dict:
    """The plain smp loop (random crops + flips, CE + Dice, Adam 1e-3, cosine, bf16) for
    `budget_s` seconds, scored with segcli's own metric code. Needs smp (pip install -e .[bench])."""
    import math

    import numpy as np
    import segmentation_models_pytorch as smp
    import torch
    import torch.nn.functional as F

    from segcli.data import prepare
    from segcli.data.io import IGNORE, encode_mask, read_image, read_mask, to_float

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    prep = prepare(str(data), 0.2, seed, ignore)
    info = prep.info
    k = 2 if info.binary else info.num_classes

    xs = [to_float(read_image(s.image)) for s in prep.splits.train]
    ys = [encode_mask(read_mask(s.mask), info.binary, info.ignore_index) for s in prep.splits.train]
    c = xs[0].shape[2]
    mean = np.mean([x.reshape(-1, c).mean(0) for x in xs], 0)
    std = np.mean([x.reshape(-1, c).std(0) for x in xs], 0) + 1e-3
    xs = [(x - mean) / std for x in xs]
    model = smp.Unet("resnet18", encoder_weights=None, in_channels=c, classes=k)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    dice = smp.losses.DiceLoss("multiclass", ignore_index=IGNORE)
    crop, bs = 256, 4
    gray = c == 1

    model.train()
    t0 = time.perf_counter()
    steps = 0
    while (elapsed := time.perf_counter() - t0) < budget_s:
        for g in opt.param_groups:
            g["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / budget_s)))
        x, y = peer_batch(xs, ys, crop, bs, rng, gray, IGNORE)
        with peer_autocast("cpu"):
            logits = model(x)
        logits = logits.float()
        loss = F.cross_entropy(logits, y, ignore_index=IGNORE) + dice(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    seconds = time.perf_counter() - t0
    result = score_test(model, data, info, mean, std)
    result["seconds"] = seconds
    result["steps"] = steps
    return result
