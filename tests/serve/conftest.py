"""Helpers for the server tests: test images, predict's own masks, and real server processes."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli, save_png

ROOT = Path(__file__).resolve().parents[2]



def need_serve_extra() -> None:
    """Skip a test module when the web stack is missing (the dev extra brings it)."""
    for name in ("fastapi", "uvicorn", "multipart", "httpx"):
        pytest.importorskip(name, reason="the serve extra is not installed: pip install -e '.[dev]'")


def best(work: Path) -> Path:
    return next(work.glob("runs/train/*/weights/best.pt"))


def crops(src: Path, out: Path, size: tuple[int, int], count: int) -> list[Path]:
    """`count` distinct images of `size` (h, w) cut and flipped from the images under `src`."""
    sources = sorted(p for p in src.iterdir() if p.suffix == ".png")
    paths = []
    for i in range(count):
        img = np.array(Image.open(sources[i % len(sources)]).convert("RGB"))
        h, w = size
        y, x = (i // len(sources)) % max(1, img.shape[0] - h + 1), (i * 3) % max(1, img.shape[1] - w + 1)
        part = img[y : y + h, x : x + w]
        if (i // len(sources)) % 2:
            part = part[:, ::-1]
        paths.append(save_png(out / f"c{i:02d}.png", np.ascontiguousarray(part)))
    return paths


def predicted(work: Path, image: Path, out: Path, *extra: str) -> bytes:
    """The bytes of the mask `segcli predict IMAGE -o OUT` writes (default options + `extra`)."""
    r = run_cli(["predict", image, "-o", out, *extra], cwd=work)
    assert r.code == 0, r.err
    return out.read_bytes()


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


@dataclass
class LiveServer:
    """`segcli serve` in its own process on a free port of 127.0.0.1."""

    proc: subprocess.Popen
    url: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"server did not exit {timeout} s after signal {sig}:\n{self.log.read_text()[-3000:]}")


def start_server(args: list[object], cwd: Path, log: Path, timeout: float = 120) -> LiveServer:
    """Start `segcli serve --port 0 ARGS`, read its address from stdout, wait until /healthz is 200."""
    import httpx

    cmd = [sys.executable, "-m", "segcli", "serve", "--port", "0", *map(str, args)]
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=err, text=True, env=env())
    url = _first_line(proc, timeout)
    if not url:
        proc.kill()
        raise AssertionError(f"server printed no address:\n{log.read_text()[-3000:]}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                return LiveServer(proc, url, log)
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"server not healthy:\n{log.read_text()[-3000:]}")


def _first_line(proc: subprocess.Popen, timeout: float) -> Optional[str]:
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        return None
    return proc.stdout.readline().strip() or None


@pytest.fixture(scope="package")
def pt_server(fitted_multi: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`segcli serve` over the multi-class .pt model, defaults otherwise; SIGTERM at the end must exit 0."""
    need_serve_extra()
    server = start_server(["--model", best(fitted_multi)], cwd=fitted_multi,
                          log=tmp_path_factory.mktemp("pt_server") / "serve.log")
    yield server
    assert server.stop() == 0, server.log.read_text()[-3000:]


@pytest.fixture(scope="package")
def onnx_model(fitted_binary: Path) -> Path:
    """The binary model exported to ONNX (next to its runs/ folder)."""
    r = run_cli(["export", "-o", "serve.onnx"], cwd=fitted_binary)
    assert r.code == 0, r.err
    return fitted_binary / "serve.onnx"
