"""The `segcli serve` command: one-line errors (missing extra, bad options, taken port, bad model)
and the torch-free ONNX path."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli, save_png
from tests.serve.conftest import ROOT, env, need_serve_extra, predicted

need_serve_extra()


@pytest.mark.parametrize("module", ["fastapi", "uvicorn", "multipart"])
def test_missing_extra_is_one_line_naming_it(module: str, fitted_binary: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    r = run_cli(["serve"], cwd=fitted_binary)
    assert r.code == 2 and r.err.strip() == "error: segcli serve needs the serve extra: pip install 'segcli[serve]'"


@pytest.mark.parametrize("args, needle", [
    (["--max-batch", "0"], "--max-batch"),
    (["--max-queue", "0"], "--max-queue"),
    (["--port", "70000"], "--port 70000"),
    (["--tile", "64", "--no-tile"], "--tile and --no-tile"),
    (["--model", "nothing.pt"], "nothing.pt: model file not found"),
    (["--port", "abc"], "--port"),
])
def test_bad_options_are_one_line_exit_2(args: list[str], needle: str, fitted_binary: Path) -> None:
    r = run_cli(["serve", *args], cwd=fitted_binary)
    assert r.code == 2 and needle in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err


def test_a_taken_port_is_one_line_exit_2(fitted_binary: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = run_cli(["serve", "--port", port], cwd=fitted_binary)
    assert r.code == 2 and f"127.0.0.1:{port}: cannot listen" in r.err and "--port" in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_a_bad_model_file_is_one_line_exit_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    r = run_cli(["serve", "--model", junk, "--port", "0"], cwd=tmp_path)
    assert r.code == 2 and "junk.onnx: not a loadable ONNX model" in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_onnx_model_is_served_without_importing_torch(onnx_model: Path, binary_data: Path, tmp_path: Path) -> None:
    img = save_png(tmp_path / "a.png", np.array(Image.open(sorted((binary_data / "images").iterdir())[0]))[:37, :43])
    want = predicted(onnx_model.parent, img, tmp_path / "want.png", "--model", onnx_model)
    script = """
import sys
sys.modules["torch"] = None  # an inference-only install: any `import torch` fails
from fastapi.testclient import TestClient
from segcli.serve.app import create_app
from segcli.serve.config import ServeConfig
from segcli.serve.service import Service
cfg = ServeConfig(model=sys.argv[3])
with TestClient(create_app(cfg, Service.load(cfg))) as client:
    r = client.post("/predict", content=open(sys.argv[1], "rb").read())
    assert r.status_code == 200, r.text
    open(sys.argv[2], "wb").write(r.content)
    assert client.get("/model").json()["kind"] == "onnx"
loaded = sorted(m for m in sys.modules if (m == "torch" or m.startswith("torch.")) and sys.modules[m] is not None)
assert not loaded, loaded
"""
    p = subprocess.run([sys.executable, "-c", script, str(img), str(tmp_path / "got.png"), str(onnx_model)],
                       capture_output=True, text=True, env=env())
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "got.png").read_bytes() == want


def test_serve_is_a_registered_command_with_help() -> None:
    r = run_cli(["serve", "--help"])
    assert r.code == 0 and "--max-batch" in r.out and "--workers" in r.out


def test_kubernetes_manifest_probes_healthz_and_uses_real_options() -> None:
    import yaml

    docs = list(yaml.safe_load_all((ROOT / "examples" / "kubernetes" / "segcli-serve.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    command = container["command"]
    assert command[:2] == ["segcli", "serve"]
    help_text = run_cli(["serve", "--help"]).out
    assert all(opt in help_text for opt in command if opt.startswith("--"))
    timeout = float(command[command.index("--graceful-timeout") + 1])
    assert pod["terminationGracePeriodSeconds"] > timeout + 5  # the drain fits in the grace period
