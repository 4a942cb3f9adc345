"""Experiment tracking: TensorBoard and MLflow as training callbacks (segcli.train.callbacks).

Each records, per epoch, every metrics.csv column as a scalar (same name, step = epoch; empty
and NaN cells are skipped); after each validation, the validation samples image (image | truth
| prediction, as plots/val_samples.png); at the start, the resolved config as hyper-parameters.
MLflow also keeps the best checkpoint, metrics.csv, config.yaml and the plots as artifacts.

`--logger auto` (the default) is TensorBoard when its package is installed, else none, as
PyTorch Lightning and Ultralytics do: its event files go into the run folder beside
metrics.csv, so nothing appears anywhere new and `tensorboard --logdir runs/train` shows every
run. MLflow is used only when asked for, because it writes outside the run folder (its
default local store in the working folder: ./mlruns, plus ./mlflow.db where MLflow defaults
to SQLite; or MLFLOW_TRACKING_URI). The engine calls callbacks on the main process only, and the loggers are
built on rank 0 only, so under torchrun one process logs.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Optional

from segcli.errors import Interrupted, UserError
from segcli.train.callbacks import Callbacks

LOGGERS = ("auto", "tensorboard", "mlflow", "none")
EXPERIMENT = "segcli"  # MLflow experiment unless MLFLOW_EXPERIMENT_NAME names one


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def resolve_logger(name: str) -> str:
    """`--logger` made concrete: auto -> tensorboard when installed, else none. A logger whose
    package is missing is a one-line error naming the extra to install."""
    name = str(name).lower()
    if name not in LOGGERS:
        raise UserError(f"--logger '{name}': expected auto, tensorboard, mlflow or none")
    if name == "auto":
        return "tensorboard" if installed("tensorboard") else "none"
    if name != "none" and not installed(name):
        raise UserError(f"--logger {name}: the {name} package is not installed; pip install 'segcli[{name}]'")
    return name


def build_loggers(name: str) -> list[Callbacks]:
    """The logger callbacks for `--logger NAME` on this process (none off rank 0)."""
    from segcli.ranks import is_main_process

    name = resolve_logger(name)
    if name == "none" or not is_main_process():
        return []
    return [TensorBoardLogger() if name == "tensorboard" else MlflowLogger()]


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """A metrics.csv row (the engine's on_epoch_end row) as scalars: every column but `epoch` that
    holds a finite number."""
    out = {}
    for k, v in row.items():
        if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = float(v)
    return out


def flat_params(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved {train, model, data_info} config as flat `section.key` parameters; values other
    than numbers, strings and booleans as text."""
    out: dict[str, Any] = {}
    for section, values in config.items():
        for k, v in (values or {}).items():
            out[f"{section}.{k}"] = v if isinstance(v, (bool, int, float, str)) else str(v)
    return out


def _grid(info: Any, samples: Any) -> Any:
    from segcli.visualize import sample_grid

    return sample_grid(samples, info.binary, info.colors, info.bands)


class TensorBoardLogger(Callbacks):
    """Event files in the run folder: scalars, the validation samples image, text and HParams."""

    def __init__(self) -> None:
        self.writer: Any = None
        self.info: Any = None

    def on_start(self, info: dict[str, Any]) -> None:
        import yaml
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(log_dir=str(info["run_dir"]))
        self.info = info["info"]
        # the HParams dashboard: the resolved config beside the validation scalars of the same run
        for summary in hparams(flat_params(info["config"]), {"val_mIoU": float("nan"), "val_Dice": float("nan")}):
            self.writer.file_writer.add_summary(summary)
        text = yaml.safe_dump(info["config"], sort_keys=False)
        self.writer.add_text("config", "    " + text.replace("\n", "\n    "), int(info.get("start_epoch") or 0))

    def on_validation(self, epoch: int, samples: Any) -> None:
        grid = _grid(self.info, samples)
        if grid is not None:
            self.writer.add_image("val_samples", grid, epoch, dataformats="HWC")

    def on_epoch_end(self, row: dict[str, Any]) -> None:
        for k, v in scalars(row).items():
            self.writer.add_scalar(k, v, int(row["epoch"]))
        self.writer.flush()  # a watcher sees each epoch as it ends

    def on_finish(self, result: Any) -> None:
        self.close()

    def close(self, error: Optional[BaseException] = None) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class MlflowLogger(Callbacks):
    """One MLflow run per training run (continued by --resume), through MlflowClient: no global
    active run is left behind in the process."""

    def __init__(self) -> None:
        self.client: Any = None
        self.run_id: Optional[str] = None
        self.info: Any = None

    def on_start(self, info: dict[str, Any]) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # the local store's set-up chatter is not the user's business
            logging.getLogger(name).setLevel(logging.WARNING)
        self.client = MlflowClient(mlflow.get_tracking_uri())
        self.info = info["info"]
        run_dir = str(Path(info["run_dir"]).resolve())  # the tag --resume finds the run by
        exp_name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        exp = self.client.get_experiment_by_name(exp_name)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(exp_name)
        if info.get("start_epoch"):  # --resume: carry on in the run that began this run folder
            self.run_id = self._previous(exp_id, run_dir)
        if self.run_id is None:
            run = self.client.create_run(exp_id, run_name=Path(run_dir).name, tags={"segcli.run_dir": run_dir})
            self.run_id = run.info.run_id
            self._log_params(flat_params(info["config"]))
        else:
            self.client.update_run(self.run_id, status="RUNNING")

    def _previous(self, exp_id: str, run_dir: str) -> Optional[str]:
        runs = self.client.search_runs([exp_id], filter_string=f"tags.`segcli.run_dir` = '{run_dir}'",
                                       max_results=1, order_by=["attributes.start_time DESC"])
        return runs[0].info.run_id if runs else None

    def _log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:500]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 parameters a call
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def on_validation(self, epoch: int, samples: Any) -> None:
        grid = _grid(self.info, samples)
        if grid is not None:
            self.client.log_image(self.run_id, grid, artifact_file=f"val_samples/epoch_{epoch:04d}.png")

    def on_epoch_end(self, row: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, int(row["epoch"])) for k, v in scalars(row).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def on_finish(self, result: Any) -> None:
        run_dir = Path(result.run_dir)
        for path, where in ((run_dir / "weights" / "best.pt", "weights"), (run_dir / "metrics.csv", None),
                            (run_dir / "config.yaml", None)):
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path), where)
        if (run_dir / "plots").is_dir():
            self.client.log_artifacts(self.run_id, str(run_dir / "plots"), "plots")
        self.client.set_terminated(self.run_id, "FINISHED")
        self.run_id = None

    def close(self, error: Optional[BaseException] = None) -> None:
        """A run that ended without on_finish (an error, Ctrl-C) is marked so in MLflow."""
        if self.client is not None and self.run_id is not None:
            status = "KILLED" if isinstance(error, (KeyboardInterrupt, Interrupted)) else "FAILED"
            self.client.set_terminated(self.run_id, status)
            self.run_id = None
