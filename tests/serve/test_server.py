"""`segcli serve` as a real process on 127.0.0.1: curl gets predict's mask, many concurrent clients
get correct answers, an overload burst gets masks or 503s (never silence), and SIGTERM drains."""

from __future__ import annotations

import io
import re
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from tests.cli.test_predict import _big_image
from tests.conftest import run_cli
from tests.serve.conftest import LiveServer, best, crops, need_serve_extra, predicted, start_server

need_serve_extra()

import httpx  # noqa: E402


def agree(got: bytes, want: bytes) -> float:
    """Share of equal mask pixels (a concurrent answer may come from a batch of another size;
    batch size may move a borderline pixel, never a whole mask)."""
    a, b = np.array(Image.open(io.BytesIO(got))), np.array(Image.open(io.BytesIO(want)))
    return float((a == b).mean()) if a.shape == b.shape else 0.0


def test_curl_upload_gets_predicts_mask_and_every_endpoint_answers(pt_server: LiveServer, fitted_multi: Path,
                                                                   multiclass_data: Path, tmp_path: Path) -> None:
    img = crops(multiclass_data / "val" / "images", tmp_path, (37, 43), 1)[0]
    want = predicted(fitted_multi, img, tmp_path / "predict.png")
    got = tmp_path / "m.png"
    if shutil.which("curl"):
        subprocess.run(["curl", "-sSf", "-F", f"file=@{img}", f"{pt_server.url}/predict", "-o", got], check=True)
    else:
        got.write_bytes(httpx.post(f"{pt_server.url}/predict", files={"file": img.open("rb")}).content)
    assert got.read_bytes() == want
    for path, needle in (("/healthz", '"ok"'), ("/model", '"classes"'), ("/metrics", "segcli_requests_total"),
                         ("/", "<!doctype html>"), ("/docs", "swagger"), ("/openapi.json", '"/predict"')):
        r = httpx.get(pt_server.url + path)
        assert r.status_code == 200 and needle in r.text, path


def test_32_clients_x_10_requests_all_answered_correctly(pt_server: LiveServer, fitted_multi: Path,
                                                        multiclass_data: Path, tmp_path: Path) -> None:
    images = crops(multiclass_data / "train" / "images", tmp_path / "in", (32, 32), 8)
    r = run_cli(["predict", tmp_path / "in", "-o", tmp_path / "want"], cwd=fitted_multi)
    assert r.code == 0, r.err
    want = {p.name: (tmp_path / "want" / p.name).read_bytes() for p in images}
    assert len(set(want.values())) == len(images)  # distinct answers: a mix-up would show
    bodies = {p.name: p.read_bytes() for p in images}

    def client(i: int) -> list[tuple[str, int, bytes]]:
        out = []
        with httpx.Client(base_url=pt_server.url, timeout=120) as c:
            for j in range(10):
                name = images[(i + j) % len(images)].name
                resp = c.post("/predict", content=bodies[name])
                out.append((name, resp.status_code, resp.content))
        return out

    with ThreadPoolExecutor(32) as pool:
        answers = [a for part in pool.map(client, range(32)) for a in part]
    assert len(answers) == 320 and all(status == 200 for _, status, _ in answers)
    scores = [agree(body, want[name]) for name, _, body in answers]
    exact = sum(body == want[name] for name, _, body in answers)
    print(f"{exact}/320 byte-identical to predict; lowest pixel agreement {min(scores):.4f}")
    assert min(scores) >= 0.999
    metrics = httpx.get(pt_server.url + "/metrics").text
    single = float(re.search(r'segcli_batch_size_bucket\{le="1"\} (\S+)', metrics).group(1))
    batches = float(re.search(r"segcli_batch_size_count (\S+)", metrics).group(1))
    assert batches < 320 + 10 and single < batches  # some requests shared a forward pass


@pytest.fixture(scope="module")
def workers_server(onnx_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Two worker processes over the .onnx model, each admitting 2 requests at a time. Stopped with
    Ctrl-C's signal at the end: exit 130, as every segcli command interrupted."""
    server = start_server(["--model", onnx_model, "--workers", "2", "--max-queue", "2", "--no-access-log"],
                          cwd=onnx_model.parent, log=tmp_path_factory.mktemp("workers") / "serve.log")
    yield server
    assert server.stop(signal.SIGINT) == 130, server.log.read_text()[-3000:]
    assert "error: interrupted (Ctrl-C)" in server.log.read_text()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and "spawn_main" in (stat.parent / "cmdline").read_text():
            found.append(int(stat.parent.name))
    return found


def test_overload_burst_every_answer_a_mask_or_503(workers_server: LiveServer, onnx_model: Path,
                                                   binary_data: Path, tmp_path: Path) -> None:
    """16 clients at once against 2 x 2 admitted requests (4x overload), each sending 4 TTA requests."""
    assert len(_children(workers_server.proc.pid)) == 2
    images = crops(binary_data / "images", tmp_path / "in", (128, 128), 4)
    want = {p.name: predicted(onnx_model.parent, p, tmp_path / "want" / p.name, "--model", onnx_model, "--tta")
            for p in images}

    def client(i: int) -> list[tuple[str, httpx.Response]]:
        with httpx.Client(base_url=workers_server.url, timeout=120) as c:
            return [(images[(i + j) % 4].name, c.post("/predict", params={"tta": "true"},
                                                     content=images[(i + j) % 4].read_bytes())) for j in range(4)]

    with ThreadPoolExecutor(16) as pool:
        answers = [a for part in pool.map(client, range(16)) for a in part]
    codes = [r.status_code for _, r in answers]
    print(f"{codes.count(200)} masks, {codes.count(503)} x 503 of {len(codes)}")
    assert len(answers) == 64 and set(codes) <= {200, 503} and 503 in codes and 200 in codes
    for name, r in answers:
        if r.status_code == 200:
            assert agree(r.content, want[name]) >= 0.999
        else:
            assert int(r.headers["retry-after"]) >= 1 and "--max-queue" in r.json()["error"]
    assert httpx.get(workers_server.url + "/healthz").status_code == 200
    name = images[0].name
    assert httpx.post(workers_server.url + "/predict?tta=true", content=images[0].read_bytes()).content == want[name]


def test_sigterm_lets_the_requests_inside_finish_then_exits_0(onnx_model: Path, tmp_path: Path) -> None:
    server = start_server(["--model", onnx_model], cwd=onnx_model.parent, log=tmp_path / "serve.log")
    img = _big_image(tmp_path / "big.png", (512, 512))  # tiled, with TTA: about a second each
    want = predicted(onnx_model.parent, img, tmp_path / "want.png", "--model", onnx_model, "--tta")
    with ThreadPoolExecutor(2) as pool:
        inside = [pool.submit(httpx.post, server.url + "/predict?tta=true", content=img.read_bytes(), timeout=120)
                  for _ in range(2)]
        deadline = time.monotonic() + 60
        while "segcli_inflight_requests 2" not in httpx.get(server.url + "/metrics").text:
            assert time.monotonic() < deadline and not any(f.done() for f in inside)
            time.sleep(0.02)
        server.proc.send_signal(signal.SIGTERM)
        answers = [f.result() for f in inside]
    assert server.stop() == 0, server.log.read_text()[-3000:]
    assert [r.status_code for r in answers] == [200, 200] and all(r.content == want for r in answers)
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/healthz")
