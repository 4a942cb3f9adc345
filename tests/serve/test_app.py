"""`segcli serve` in-process (FastAPI's TestClient): the answers are `segcli predict`'s bytes, the
endpoints answer, and bad input is a clear 4xx that leaves the server and other answers alone."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image

from segcli.config import DataInfo
from segcli.infer.predictor import Predictor
from segcli.models.output import OutputSpec
from tests.cli.test_predict import _big_image
from tests.conftest import run_cli
from tests.serve.conftest import best, crops, need_serve_extra, predicted

need_serve_extra()

from fastapi.testclient import TestClient  # noqa: E402

from segcli.serve.app import create_app  # noqa: E402
from segcli.serve.config import ServeConfig  # noqa: E402
from segcli.serve.service import Service  # noqa: E402


@contextmanager
def client_for(model: Path, **options: Any) -> Iterator[TestClient]:
    cfg = ServeConfig(model=str(model), **options)
    with TestClient(create_app(cfg, Service.load(cfg))) as client:
        yield client


@pytest.fixture(scope="module")
def multi(fitted_multi: Path) -> Iterator[TestClient]:
    with client_for(best(fitted_multi)) as client:
        yield client


@pytest.fixture(scope="module")
def binary(fitted_binary: Path) -> Iterator[TestClient]:
    with client_for(best(fitted_binary)) as client:
        yield client


@pytest.fixture(scope="module")
def odd_images(multiclass_data: Path, binary_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One image per model whose size is no multiple of the model's (padding and cropping run)."""
    out = tmp_path_factory.mktemp("odd")
    return {"multi": crops(multiclass_data / "val" / "images", out / "multi", (37, 43), 1)[0],
            "binary": crops(binary_data / "images", out / "binary", (37, 43), 1)[0]}


def post(client: TestClient, image: Path, raw: bool = False, **params: Any) -> Any:
    data = image.read_bytes()
    if raw:
        return client.post("/predict", params=params, content=data, headers={"content-type": "image/png"})
    return client.post("/predict", params=params, files={"file": (image.name, data, "image/png")})


@pytest.mark.parametrize("kind", ["multi", "binary"])
def test_masks_and_overlays_are_the_bytes_predict_writes(kind: str, odd_images: dict[str, Path], tmp_path: Path,
                                                         request: pytest.FixtureRequest) -> None:
    client: TestClient = request.getfixturevalue(kind)
    work: Path = request.getfixturevalue(f"fitted_{kind}")
    img = odd_images[kind]
    want = predicted(work, img, tmp_path / "m.png", "--overlay")
    mask = np.array(Image.open(io.BytesIO(want)))
    assert len(np.unique(mask)) > 1  # a real mask: a mix-up of classes or images would show
    for raw in (False, True):
        r = post(client, img, raw=raw)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content == want
    r = post(client, img, format="overlay")
    assert r.status_code == 200 and r.content == (tmp_path / "m_overlay.png").read_bytes()
    options = [("--tta", {"tta": "true"})] + ([("--threshold", {"threshold": 0.3})] if kind == "binary" else [])
    for flag, params in options:
        extra = [flag] if flag == "--tta" else [flag, "0.3"]
        assert post(client, img, **params).content == predicted(work, img, tmp_path / f"{flag[2:]}.png", *extra)


def test_a_large_image_takes_the_tiled_path(binary: TestClient, fitted_binary: Path, tmp_path: Path) -> None:
    """Trained on 32-pixel patches, the model tiles a 170x200 image by itself, as predict does."""
    img = _big_image(tmp_path / "big.png", (170, 200))
    r = post(binary, img)
    want = predicted(fitted_binary, img, tmp_path / "big_mask.png")
    assert 0.05 < (np.array(Image.open(io.BytesIO(want))) == 255).mean() < 0.95  # a real mask
    assert r.status_code == 200 and r.content == want


def test_json_describes_the_mask(multi: TestClient, fitted_multi: Path, odd_images: dict[str, Path],
                                 tmp_path: Path) -> None:
    img = odd_images["multi"]
    r = run_cli(["predict", img, "-o", tmp_path / "m.png", "--overlay", "--json"], cwd=fitted_multi)
    line = json.loads(r.out.strip().splitlines()[-1])
    answer = post(multi, img, format="json", overlay="true").json()
    model = multi.get("/model").json()
    assert (answer["width"], answer["height"]) == (43, 37) and answer["task"] == "multiclass"
    assert answer["fractions"] == line["fractions"] and abs(sum(answer["fractions"]) - 1) < 1e-5
    assert [c["name"] for c in answer["classes"]] == model["classes"]
    assert [c["share"] for c in answer["classes"]] == line["fractions"]
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c["color"]) for c in answer["classes"])
    prefix = "data:image/png;base64,"
    assert answer["overlay"].startswith(prefix)
    assert base64.b64decode(answer["overlay"][len(prefix):]) == (tmp_path / "m_overlay.png").read_bytes()
    assert "overlay" not in post(multi, img, format="json").json()
    with_mask = post(multi, img, format="json", mask="true").json()
    assert base64.b64decode(with_mask["mask"][len(prefix):]) == (tmp_path / "m.png").read_bytes()
    assert "mask" not in answer


def test_json_with_quality_carries_predicts_estimate_and_error_map(multi: TestClient, fitted_multi: Path,
                                                                    odd_images: dict[str, Path], tmp_path: Path) -> None:
    img = odd_images["multi"]
    r = run_cli(["predict", img, "-o", tmp_path / "m.png", "--overlay", "--json", "--quality"], cwd=fitted_multi)
    line = json.loads(r.out.strip().splitlines()[-1])
    answer = post(multi, img, format="json", overlay="true", quality="true").json()
    prefix = "data:image/png;base64,"
    assert answer["quality"] == line["quality"] and 0 <= answer["quality"] <= 1
    assert base64.b64decode(answer["error_map"][len(prefix):]) == (tmp_path / "m_error.png").read_bytes()
    assert "error" not in answer  # the key of failure answers only
    assert base64.b64decode(answer["overlay"][len(prefix):]) == (tmp_path / "m_overlay.png").read_bytes()
    assert "quality" not in post(multi, img, format="json").json()


def test_healthz_model_metrics_page_and_openapi(multi: TestClient, fitted_multi: Path) -> None:
    assert multi.get("/healthz").json()["status"] == "ok"
    info = run_cli(["info", best(fitted_multi), "--json"], cwd=fitted_multi)
    assert multi.get("/model").json() == json.loads(info.out)
    metrics = multi.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    for name in ("segcli_requests_total", "segcli_errors_total", "segcli_request_duration_seconds_bucket",
                 "segcli_batch_size_bucket", "segcli_queue_depth", "segcli_inflight_requests"):
        assert name in metrics.text, name
    assert re.search(r'segcli_requests_total\{code="200",endpoint="/healthz"\} [1-9]', metrics.text)
    page = multi.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)  # nothing from another host
    assert "http://" not in page.text and "https://" not in page.text
    spec = multi.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body and "image/png" in body
    params = {p["name"] for p in spec["paths"]["/predict"]["post"]["parameters"]}
    assert {"format", "threshold", "tta"} <= params
    assert {"/healthz", "/model", "/metrics"} <= set(spec["paths"])


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_bad_input_is_a_clear_4xx_and_the_server_keeps_answering(fitted_multi: Path,
                                                                  odd_images: dict[str, Path]) -> None:
    img = odd_images["multi"]
    good = img.read_bytes()
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    big = _png(np.zeros((80, 80, 3), np.uint8))  # 6400 pixels > --max-pixels 4000
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"content": b""}, 400, "empty body"),
        ({"content": b"hello, not an image"}, 415, "not an image"),
        ({"content": gif.getvalue()}, 415, "GIF images are not accepted"),
        ({"content": good[: len(good) // 2]}, 400, "cannot read image"),  # truncated PNG
        ({"files": {"a": ("a.png", good, "image/png"), "b": ("b.png", good, "image/png")}}, 400, "holds 2 files"),
        ({"data": {"note": "x"}, "files": {}}, 400, "no file"),
        ({"content": b"x" * 70_000}, 413, "at most 65536"),
        ({"content": iter([b"x" * 40_000, b"x" * 40_000])}, 413, "over 65536 bytes"),  # chunked, no length
        ({"content": big}, 413, "6400 pixels"),
        ({"content": good, "params": {"threshold": 2}}, 400, "threshold"),
        ({"content": good, "params": {"format": "bmp"}}, 400, "format"),
    ]
    with client_for(best(fitted_multi), max_body=65536, max_pixels=4000) as client:
        want = client.post("/predict", content=good).content
        for kwargs, status, text in cases:
            if "files" in kwargs and not kwargs["files"]:  # a multipart body holding no file part
                kwargs = {"content": b"--b\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nx\r\n--b--\r\n",
                          "headers": {"content-type": "multipart/form-data; boundary=b"}}
            r = client.post("/predict", **kwargs)
            assert r.status_code == status, (text, r.status_code, r.text)
            assert r.headers["content-type"] == "application/json" and text in r.json()["error"], (text, r.json())
            assert client.get("/healthz").status_code == 200
        assert client.post("/predict", content=good).content == want
        metrics = client.get("/metrics").text
        for reason in ("bad_request", "unsupported_media", "too_large"):
            assert re.search(rf'segcli_errors_total\{{reason="{reason}"\}} [1-9]', metrics), reason


# ---------------------------------------------------------------- batching and overload, with a stand-in model

POISON = (255, 0, 255)


class GatedModel:
    """A binary stand-in backend: foreground where the channel mean is above the image mean.
    `hold()` makes calls wait until `release()`; a batch holding a POISON pixel raises."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.batches: list[int] = []

    def hold(self) -> None:
        self.gate.clear()
        self.entered.clear()

    def release(self) -> None:
        self.gate.set()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.batches.append(x.shape[0])
        self.entered.set()
        assert self.gate.wait(30)
        if ((x[:, 0, 0, 0] == 2.0) & (x[:, 1, 0, 0] == -2.0)).any():  # (255, 0, 255) after normalisation
            raise ValueError("poisoned image")
        m = x.mean(1, keepdims=True)
        return (1 / (1 + np.exp(-(m - m.mean())))).astype(np.float32)


@contextmanager
def stand_in(model: GatedModel, **options: Any) -> Iterator[TestClient]:
    cfg = ServeConfig(**options)
    info = DataInfo(num_classes=2, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3, binary=True)
    service = Service(cfg, Predictor(model, info, OutputSpec(True, 2, 4)), {"path": "stand-in"})
    with TestClient(create_app(cfg, service)) as client:
        yield client


def _image(seed: int, poison: bool = False) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    if poison:
        arr[0, 0] = POISON
    return _png(arr)


def _wait(cond: Any, timeout: float = 10) -> None:
    import time

    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_a_full_server_answers_503_with_retry_after_and_recovers() -> None:
    model = GatedModel()
    with stand_in(model, max_queue=2) as client, ThreadPoolExecutor(2) as pool:
        alone = client.post("/predict", content=_image(1)).content
        model.hold()
        held = [pool.submit(client.post, "/predict", content=_image(1)) for _ in range(2)]
        _wait(lambda: "segcli_inflight_requests 2" in client.get("/metrics").text)
        r = client.post("/predict", content=_image(2))
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        assert "--max-queue" in r.json()["error"]
        assert client.get("/healthz").status_code == 200  # the event loop still answers
        model.release()
        assert [f.result().content for f in held] == [alone, alone]
        assert client.post("/predict", content=_image(2)).status_code == 200
        assert 'segcli_errors_total{reason="overloaded"} 1' in client.get("/metrics").text


def test_concurrent_same_size_requests_share_a_pass_and_a_bad_one_fails_alone() -> None:
    model = GatedModel()
    with stand_in(model, max_batch=8, max_wait=0.5) as client, ThreadPoolExecutor(4) as pool:
        solo = {s: client.post("/predict", content=_image(s)).content for s in (3, 4, 5)}
        model.batches.clear()
        model.hold()
        first = pool.submit(client.post, "/predict", content=_image(3))
        assert model.entered.wait(10)  # the model thread is busy with the first image
        rest = {s: pool.submit(client.post, "/predict", content=_image(s, poison=s == 4)) for s in (4, 5, 6)}
        _wait(lambda: "segcli_queue_depth 3" in client.get("/metrics").text)
        model.release()
        assert first.result().content == solo[3]
        answers = {s: f.result() for s, f in rest.items()}
        assert answers[5].content == solo[5] and answers[6].status_code == 200
        assert answers[4].status_code == 500 and "poisoned image" in answers[4].json()["error"]
        assert model.batches[:2] == [1, 3]  # three queued requests of one size: one forward pass
        assert client.get("/healthz").status_code == 200
        assert client.post("/predict", content=_image(5)).content == solo[5]
