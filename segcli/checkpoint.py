"""Checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint is a dict of tensors and plain data (numbers, strings, lists, dicts) so that
`torch.load(path, weights_only=True)` reads it; it carries the model and data config so
predict/export rebuild the model with no architecture flags.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional

import torch

from segcli import CHECKPOINT_FORMAT, __version__
from segcli.config import DataInfo, ModelConfig, TrainConfig, from_dict
from segcli.errors import ModelFileError, SegcliError, UserError


def atomic_write(path: Path, write: Any) -> None:
    """Write via a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    make_dirs(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)  # the previous file at `path`, if any, is untouched
        raise write_error(path, e) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_error(path: Path, e: OSError) -> SegcliError:
    """A one-line error for a failed write: a bad path is the user's (exit 2), a full disk is not (1)."""
    reason = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return SegcliError(f"{path}: cannot write ({reason}); free some disk space; earlier files are intact")
    if e.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT):
        return UserError(f"{path}: cannot write ({reason}); choose an output folder you can write to")
    return SegcliError(f"{path}: cannot write ({reason}); check free space and permissions")


def make_dirs(folder: Path) -> None:
    """mkdir -p with a one-line error (e.g. a regular file stands where a folder should be)."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(Path(folder), e) from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def save(path: Path, state: dict[str, Any]) -> None:
    state = {"format": CHECKPOINT_FORMAT, "segcli_version": __version__,
             **{k: v for k, v in state.items() if k != "_path"}}
    atomic_write(path, lambda f: torch.save(state, f))


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a segcli checkpoint safely; every failure is a one-line ModelFileError."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise for a file we refuse anyway
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found:  # a pickle that imports code: the weights-only unpickler stopped it before anything ran
            raise ModelFileError(
                f"{path}: refused to load: the file would import {found.group(1)}, which a checkpoint never "
                "needs (it may run code); nothing was executed; only load checkpoints written by segcli"
            ) from None
        raise ModelFileError(f"{path}: not a segcli checkpoint (not a PyTorch weights file)") from None
    except Exception as e:
        raise ModelFileError(f"{path}: not a segcli checkpoint ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(ckpt, dict) or "format" not in ckpt or "generator" not in ckpt:
        raise ModelFileError(f"{path}: not a segcli checkpoint (no segcli model inside)")
    if not isinstance(ckpt["format"], int) or not isinstance(ckpt["generator"], dict):
        raise ModelFileError(f"{path}: not a segcli checkpoint (malformed format or weights)")
    if int(ckpt["format"]) > CHECKPOINT_FORMAT:
        raise ModelFileError(
            f"{path}: written by a newer segcli ({ckpt.get('segcli_version', '?')}, format "
            f"{ckpt['format']}); upgrade segcli to load it"
        )
    ckpt["_path"] = str(path)  # lets later errors name the file; never saved back (see save)
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> tuple[torch.nn.Module, ModelConfig, DataInfo]:
    """Rebuild the generator from what the checkpoint says, weights loaded, in eval mode."""
    from segcli.models import build_generator

    try:
        mcfg = from_dict(ModelConfig, ckpt["model"])
        info = from_dict(DataInfo, ckpt["data_info"])
        gen = build_generator(mcfg, info)
        if any(k.startswith("decoder.blocks.") and ".up." in k for k in ckpt["generator"]):
            raise ModelFileError(f"{ckpt.get('_path', 'checkpoint')}: made by an earlier segcli whose decoder "
                                 "used transposed convolutions; retrain it with this version")
        gen.load_state_dict(ckpt["generator"])
    except UserError:
        raise
    except Exception as e:  # a damaged or hand-edited checkpoint: weights that fit no model it describes
        where = ckpt.get("_path", "checkpoint")
        first = (str(e).strip().splitlines() or [""])[0][:150]
        raise ModelFileError(f"{where}: not a usable segcli model ({type(e).__name__}: {first}); "
                             "retrain or use another checkpoint") from None
    gen.eval()
    return gen, mcfg, info


def resume_state(path: Optional[str], project: str) -> tuple[TrainConfig, ModelConfig, Optional[dict[str, Any]]]:
    """The configs and last.pt state of the run to continue; state is None when it had finished."""
    from segcli.runs import latest_run

    if path:
        p = Path(path)
        ckpt_path = p / "weights" / "last.pt" if p.is_dir() else p
    else:
        run = latest_run(project)
        if run is None:
            raise UserError(f"nothing to resume: no run under {project}/; pass a checkpoint path")
        ckpt_path = run / "weights" / "last.pt"
    if not ckpt_path.is_file() and ckpt_path.name == "last.pt" and ckpt_path.parent.is_dir():
        raise UserError(f"{ckpt_path}: not written yet (the run stopped before its first epoch ended); "
                        "start the run again instead of resuming")
    state = load(ckpt_path)
    if "opt_g" not in state:
        raise UserError(f"{ckpt_path}: holds no optimizer state (a best.pt?); resume from the run's last.pt")
    cfg = from_dict(TrainConfig, state["train"])
    mcfg = from_dict(ModelConfig, state["model"])
    run_dir = ckpt_path.parent.parent
    cfg.project, cfg.name = str(run_dir.parent), run_dir.name
    state["run_dir"] = str(run_dir)
    early_stopped = cfg.patience and int(state.get("bad_epochs", 0)) >= cfg.patience
    if state.get("finished") or int(state["epoch"]) >= cfg.epochs or early_stopped:
        return cfg, mcfg, None
    return cfg, mcfg, state
