"""The checkpoint: the typed contract between training and inference.

`Checkpoint` names every field a checkpoint file holds. On disk it is a dict of tensors and
plain data (numbers, strings, lists, dicts) so that `torch.load(path, weights_only=True)`
reads it and nothing else is ever unpickled; files are written atomically. Training writes
one per epoch (best.pt, last.pt); predict, evaluate, export, info and the API read them and
rebuild the model with no flags.

Format history: 1 = the first release; 2 adds `output` (the head's activation and the input
size multiple). Format-1 files still load: their output spec is derived from the configs.
Optional fields added since (the EMA weights; the quality estimator's weights, optimizer state
and calibration) keep format 2: older files load without them, and an older segcli reading a
newer file ignores them and still predicts.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from segcli.version import __version__
from segcli.config import DataInfo, ModelConfig, TrainConfig, from_dict, to_dict
from segcli.errors import ModelFileError, UserError
from segcli.fileio import atomic_write
from segcli.models import OutputSpec, build_generator, size_multiple

FORMAT = 2

StateDict = dict[str, Any]


@dataclass(frozen=True)
class Checkpoint:
    """Everything one checkpoint file holds."""

    train: TrainConfig
    model: ModelConfig
    data: DataInfo
    output: OutputSpec  # what the generator's logits mean and the size multiple it needs
    generator: StateDict  # weights of the model users get (what predict and export run)
    discriminator: Optional[StateDict] = None
    epoch: int = 0  # epochs finished
    best_fitness: float = -1.0  # best validation mIoU so far
    best_epoch: int = 0
    bad_epochs: int = 0  # validations since the best one (early stopping)
    history: list[dict[str, Any]] = field(default_factory=list)  # the metrics.csv rows so far
    metrics: dict[str, float] = field(default_factory=dict)  # this epoch's validation mIoU / mDice
    elapsed: float = 0.0  # training seconds so far (the --time budget resumes from here)
    data_summary: dict[str, Any] = field(default_factory=dict)  # split sizes, class pixels, class weights
    opt_g: Optional[StateDict] = None  # optimizer states: last.pt only (what --resume needs)
    opt_d: Optional[StateDict] = None
    # with --ema, `generator` holds whichever of the raw weights and their moving average validated
    # better; last.pt also keeps both (training continues the raw ones) and the average's update count
    train_generator: Optional[StateDict] = None
    ema_generator: Optional[StateDict] = None
    ema_updates: int = 0
    # the label-free quality estimator (segcli.models.estimator): its weights and width, its
    # optimizer state (last.pt), and the calibration fitted on validation regions when the run ended
    # (segcli.quality.Calibration as plain data; None until then)
    estimator: Optional[StateDict] = None
    estimator_config: dict[str, Any] = field(default_factory=dict)
    opt_e: Optional[StateDict] = None
    calibration: Optional[dict[str, Any]] = None
    finished: bool = False
    segcli_version: str = __version__
    format: int = FORMAT
    path: Optional[str] = None  # the file it was read from (for error messages); never saved

    @property
    def resumable(self) -> bool:
        return self.opt_g is not None

    @property
    def where(self) -> str:
        return self.path or "checkpoint"

    def replace(self, **changes: Any) -> "Checkpoint":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The on-disk form (format 2): plain data and tensors only."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("path", "data")}
        d.update(train=to_dict(self.train), model=to_dict(self.model), data_info=to_dict(self.data),
                 output={**to_dict(self.output), "activation": self.output.activation}, format=FORMAT,
                 segcli_version=__version__)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: Optional[str] = None) -> "Checkpoint":
        """Read format 1 or 2; a malformed entry is a one-line ModelFileError naming the file."""
        where = path or "checkpoint"
        try:
            model, data = from_dict(ModelConfig, d["model"]), from_dict(DataInfo, d["data_info"])
            out = d.get("output")
            output = (OutputSpec(bool(out["binary"]), int(out["num_classes"]), int(out["size_multiple"])) if out
                      else OutputSpec(data.binary, data.num_classes, size_multiple(model)))
            known = {f.name for f in dataclasses.fields(cls)} - {"train", "model", "data", "output", "path"}
            rest = {k: v for k, v in d.items() if k in known}
            return cls(train=from_dict(TrainConfig, d.get("train") or {}), model=model, data=data, output=output,
                       path=path, **rest)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ModelFileError(f"{where}: not a usable segcli checkpoint (malformed {type(e).__name__}: {e}); retrain or use "
                                 "another checkpoint") from None

    def save(self, path: Path) -> None:
        import torch

        state = self.to_dict()
        atomic_write(Path(path), lambda f: torch.save(state, f))

    @classmethod
    def load(cls, path: str | Path, map_location: str = "cpu") -> "Checkpoint":
        """Load a segcli checkpoint safely; every failure is a one-line ModelFileError."""
        return cls.from_dict(read_state(Path(path), map_location), str(path))

    def build_generator(self) -> Any:
        """The generator with these weights, in eval mode."""
        if any(k.startswith("decoder.blocks.") and ".up." in k for k in self.generator):
            raise ModelFileError(f"{self.where}: made by an earlier segcli whose decoder used transposed "
                                 "convolutions; retrain it with this version")
        try:
            gen = build_generator(self.model, self.data)
            gen.load_state_dict(self.generator)
        except UserError:
            raise
        except Exception as e:  # a damaged or hand-edited checkpoint: weights that fit no model it describes
            first = (str(e).strip().splitlines() or [""])[0][:150]
            raise ModelFileError(f"{self.where}: not a usable segcli model ({type(e).__name__}: {first}); "
                                 "retrain or use another checkpoint") from None
        return gen.eval()

    @property
    def has_estimator(self) -> bool:
        return self.estimator is not None

    def judges(self) -> dict[str, str]:
        """The discriminator's kind, what it was trained to predict, and where the quality estimate
        comes from (segcli.models.describe_judges)."""
        from segcli.models import describe_judges

        return describe_judges(self.train.gan, self.model.discriminator, self.has_estimator)

    def build_estimator(self) -> Any:
        """The quality estimator with these weights, in eval mode; a ModelFileError when it holds none."""
        if self.estimator is None:
            from segcli.quality import no_estimator

            raise UserError(no_estimator(self.where))
        from segcli.models.estimator import WIDTH, build_estimator

        try:
            net = build_estimator(self.data.in_channels, self.data.num_classes, self.data.binary,
                                  int(self.estimator_config.get("width", WIDTH)))
            net.load_state_dict(self.estimator)
        except Exception as e:
            first = (str(e).strip().splitlines() or [""])[0][:150]
            raise ModelFileError(f"{self.where}: unusable quality estimator ({type(e).__name__}: {first}); "
                                 "retrain or use another checkpoint") from None
        return net.eval()

    def quality_calibration(self) -> Any:
        """The segcli.quality.Calibration stored with the estimator (uncalibrated when the run that
        wrote this file has not finished)."""
        from segcli.quality import Calibration, uncalibrated

        if self.calibration is None:
            return uncalibrated(self.data.binary)
        try:
            return Calibration.from_dict(self.calibration)
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFileError(f"{self.where}: malformed quality calibration ({type(e).__name__}: {e}); "
                                 "retrain or use another checkpoint") from None


def read_state(path: Path, map_location: str = "cpu") -> dict[str, Any]:
    """The raw dict of a checkpoint file, read with the weights-only unpickler and checked."""
    import torch

    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise for a file we refuse anyway
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
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
    if not isinstance(state, dict) or "format" not in state or "generator" not in state:
        raise ModelFileError(f"{path}: not a segcli checkpoint (no segcli model inside)")
    if not isinstance(state["format"], int) or not isinstance(state["generator"], dict):
        raise ModelFileError(f"{path}: not a segcli checkpoint (malformed format or weights)")
    if int(state["format"]) > FORMAT:
        raise ModelFileError(f"{path}: written by a newer segcli ({state.get('segcli_version', '?')}, format "
                             f"{state['format']}); upgrade segcli to load it")
    return state
