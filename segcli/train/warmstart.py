"""`segcli train DATA --init CKPT`: a new run that starts from a trained model's weights.

What `--resume` is not: a new run folder, a fresh optimizer, learning-rate schedule and budget, on
data that may have grown (the labelling loop of `segcli select`). The architecture and the
normalisation statistics are the checkpoint's (the weights expect both); the generator starts from
the weights users got (best.pt's), and the judge or discriminator from the checkpoint's where the
checkpoint has one of the same shape (otherwise it starts fresh).
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Optional

import torch

from segcli.checkpoint import Checkpoint
from segcli.config import DataInfo, ModelConfig
from segcli.errors import UserError
from segcli.runs import model_file


def load_init(path: str) -> Checkpoint:
    """The checkpoint behind --init: a .pt file, or a run folder (its best.pt, else last.pt)."""
    p = model_file(Path(path)) if Path(path).is_dir() else Path(path)
    if not p.is_file():
        raise UserError(f"--init {path}: no checkpoint there; pass a .pt file or a run folder (runs/train/exp)")
    return Checkpoint.load(p)


def model_config(init: Checkpoint, asked: ModelConfig) -> ModelConfig:
    """The checkpoint's architecture; an architecture option that asks for another one is an error."""
    default = ModelConfig()
    for f in fields(ModelConfig):
        mine, theirs = getattr(asked, f.name), getattr(init.model, f.name)
        if mine != getattr(default, f.name) and mine != theirs:
            option = "--" + f.name.replace("_", "-")
            raise UserError(f"--init {init.where}: the architecture comes from the checkpoint ({f.name} {theirs}); "
                            f"leave out {option} {mine}, or train from scratch without --init")
    return init.model


def data_info(init: Checkpoint, info: DataInfo, data: str) -> DataInfo:
    """This data's description with the checkpoint's normalisation; the outputs must be the same."""
    old, new = init.data, info
    if (old.in_channels, old.out_channels, old.binary) != (new.in_channels, new.out_channels, new.binary):
        raise UserError(f"--init {init.where}: the model reads {old.in_channels}-channel images into "
                        f"{_classes(old)}, {data} has {new.in_channels}-channel images and {_classes(new)}; "
                        "train from scratch without --init")
    return replace(new, mean=list(old.mean), std=list(old.std))


def _classes(info: DataInfo) -> str:
    return "a binary mask" if info.binary else f"{info.num_classes} classes"


def load_weights(module: torch.nn.Module, state: Optional[dict[str, Any]]) -> bool:
    """Load `state` into `module` when it fits (the same keys and shapes); False otherwise."""
    if not state:
        return False
    own = module.state_dict()
    if own.keys() != state.keys() or any(own[k].shape != v.shape for k, v in state.items()):
        return False
    module.load_state_dict(state)
    return True
