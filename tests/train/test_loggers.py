"""--logger: TensorBoard event files and MLflow runs hold what metrics.csv holds, read back with their
own readers; the default, rank 0 only, and a missing package as a one-line error naming the extra."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import pytest

from segcli.data.synthetic import make_dataset
from segcli.errors import UserError
from segcli.train import loggers
from segcli.train.loggers import build_loggers, flat_params, resolve_logger, scalars
from tests.conftest import run_cli

TINY2 = ["--base-channels", "4", "--depth", "2", "--batch-size", "2", "--img-size", "32", "--precision", "32"]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("small"), count=6, size=(32, 32), classes=3, classes_file=True)


def _csv(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _expected(rows: list[dict[str, str]]) -> dict[str, list[tuple[int, float]]]:
    """Every column but epoch, as (epoch, value) where the cell holds a finite number."""
    out: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for k, v in row.items():
            if k != "epoch" and v not in ("", None) and math.isfinite(float(v)):
                out.setdefault(k, []).append((int(row["epoch"]), float(v)))
    return out


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=2e-5, abs_tol=1e-9)  # metrics.csv keeps 6 digits, events float32


def test_tensorboard_scalars_equal_metrics_csv(small: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = run_cli(["train", small, "--epochs", "2", *TINY2, "--logger", "tensorboard"], cwd=tmp_path)
    assert r.code == 0, r.err
    run = tmp_path / r.out.strip().splitlines()[-1]
    assert list(run.glob("events.out.tfevents.*"))  # in the run folder, nowhere else
    ea = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    ea.Reload()
    want = _expected(_csv(run))
    assert set(ea.Tags()["scalars"]) == set(want) and {"val_mIoU", "g_loss", "lr_g"} <= set(want)
    for tag, points in want.items():
        got = [(e.step, e.value) for e in ea.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in points], tag
        assert all(_close(a, b) for (_, a), (_, b) in zip(got, points)), (tag, got, points)
    assert [e.step for e in ea.Images("val_samples")] == [1, 2]
    assert "_hparams_/experiment" in ea.PluginTagToContent("hparams")
    assert "logger: tensorboard" in (run / "config.yaml").read_text()


def test_mlflow_run_holds_params_metrics_and_best_checkpoint(small: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    r = run_cli(["train", small, "--epochs", "1", *TINY2, "--logger", "mlflow"], cwd=tmp_path)
    assert r.code == 0, r.err
    run_dir = tmp_path / r.out.strip().splitlines()[-1]
    assert (tmp_path / "mlruns").is_dir()  # MLflow's default local store, in the working folder
    monkeypatch.chdir(tmp_path)
    client = MlflowClient(mlflow.get_tracking_uri())
    exp = client.get_experiment_by_name("segcli")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "exp" and run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "1" and run.data.params["data_info.num_classes"] == "3"
    assert run.data.params["model.base_channels"] == "4" and run.data.tags["segcli.run_dir"] == str(run_dir.resolve())
    for key, points in _expected(_csv(run_dir)).items():
        got = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        assert [s for s, _ in got] == [s for s, _ in points] and all(
            _close(a, b) for (_, a), (_, b) in zip(got, points)), key
    files = {f.path for f in client.list_artifacts(run.info.run_id, "weights")}
    assert files == {"weights/best.pt"}
    local = Path(client.download_artifacts(run.info.run_id, "weights/best.pt", str(tmp_path / "dl")))
    assert local.read_bytes() == (run_dir / "weights" / "best.pt").read_bytes()
    assert {f.path for f in client.list_artifacts(run.info.run_id, "val_samples")} == {"val_samples/epoch_0001.png"}


def test_default_and_missing_packages(small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_logger("auto") == ("tensorboard" if loggers.installed("tensorboard") else "none")
    monkeypatch.setattr(loggers, "installed", lambda name: False)
    assert resolve_logger("auto") == "none" and resolve_logger("none") == "none"
    for name in ("tensorboard", "mlflow"):
        r = run_cli(["train", small, "--epochs", "1", "--logger", name], cwd=tmp_path)
        assert r.code == 2 and r.err.strip() == (f"error: --logger {name}: the {name} package is not installed; "
                                                 f"pip install 'segcli[{name}]'")
    with pytest.raises(UserError, match="--logger 'wandb': expected auto, tensorboard, mlflow or none"):
        resolve_logger("wandb")
    assert not (tmp_path / "runs").exists()


def test_only_rank_zero_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    if not loggers.installed("tensorboard"):
        pytest.skip("tensorboard not installed")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert build_loggers("tensorboard") == []
    monkeypatch.setenv("RANK", "0")
    assert [type(c).__name__ for c in build_loggers("tensorboard")] == ["TensorBoardLogger"]


def test_rows_and_configs_become_scalars_and_params() -> None:
    row = {"epoch": 3, "g_loss": 0.5, "g_adv": float("nan"), "lr_d": 1e-4, "semi_pixels": None, "seconds": 2}
    assert scalars(row) == {"g_loss": 0.5, "lr_d": 1e-4, "seconds": 2.0}
    params = flat_params({"train": {"epochs": 2, "bands": None}, "data_info": {"mean": [0.5, 0.25]}})
    assert params == {"train.epochs": 2, "train.bands": "None", "data_info.mean": "[0.5, 0.25]"}
    assert os.environ.get("RANK") in (None, "0")
