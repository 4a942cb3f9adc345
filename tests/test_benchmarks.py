"""The benchmark scripts stay runnable: each imports, answers --help fast, and is indexed.

Benchmarks are run by hand, rarely, so nothing else notices when a refactor of segcli breaks
one. These checks run no benchmark: importing a script and its --help must not need the data,
torch or a GPU.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in ("__init__", "harness"))
HEAVY = ("torch", "cv2", "onnxruntime", "segmentation_models_pytorch")  # none is needed for --help


@pytest.fixture
def repo_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", [str(ROOT), *sys.path])  # restored afterwards (scripts add it too)


def test_scripts_found() -> None:
    assert {"quality", "predict", "train_speed", "export_parity"} <= set(SCRIPTS)
    assert not (BENCH / "datasets.py").exists()  # replaced by harness.py


@pytest.mark.parametrize("name", ["harness", *SCRIPTS])
def test_imports(name: str, repo_on_path: None) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    if name != "harness":
        assert callable(getattr(module, "main", None)), f"benchmarks/{name}.py has no main()"


@pytest.fixture(scope="module")
def help_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess]:
    """`python -X importtime benchmarks/NAME.py --help` for every script, in parallel, from
    another folder (a script must not depend on the cwd)."""
    cwd = tmp_path_factory.mktemp("bench_help")

    def run(name: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-X", "importtime", str(BENCH / f"{name}.py"), "--help"],
                              cwd=cwd, capture_output=True, text=True, timeout=120)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(SCRIPTS, pool.map(run, SCRIPTS)))


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name: str, help_runs: dict[str, subprocess.CompletedProcess]) -> None:
    r = help_runs[name]
    errors = "\n".join(line for line in r.stderr.splitlines() if not line.startswith("import time:"))
    assert r.returncode == 0, errors
    assert r.stdout.startswith("usage:") and f"{name}.py" in r.stdout.splitlines()[0], r.stdout
    # -X importtime lists every module imported: --help must come before the heavy ones
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & set(HEAVY), f"--help imports {sorted(imported & set(HEAVY))}"


def test_gpu_check_script(repo_on_path: None) -> None:
    script = BENCH / "gpu_check.sh"
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for module, names in re.findall(r"from (benchmarks\.\w+) import ([\w, ]+)", script.read_text()):
        mod = importlib.import_module(module)
        for n in names.split(","):
            assert hasattr(mod, n.strip()), f"gpu_check.sh imports {module}.{n.strip()}, which does not exist"


def test_readme_indexes_every_script() -> None:
    text = (BENCH / "README.md").read_text()
    for name in [*SCRIPTS, "gpu_check"]:
        assert f"benchmarks/{name}." in text, f"benchmarks/README.md does not describe {name}"
