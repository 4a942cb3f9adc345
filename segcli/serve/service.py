"""The server's state and the path of one prediction: admit, read, check, decode, batch, encode.

Everything a request costs is bounded before it is spent: the request count and body size
before reading, the pixel count (from the header) before decoding. Decoding and encoding run
on a small thread pool and the model on its own thread (segcli.serve.batcher), so the event
loop only moves bytes and keeps answering /healthz and /metrics under load.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Optional, TypeVar

import numpy as np

from segcli.infer.modelinfo import model_info
from segcli.infer.options import InferenceOptions
from segcli.infer.predictor import Predictor, Segmentation, load_predictor, resolve_model
from segcli.quality import no_estimator
from segcli.serve import codec
from segcli.serve.batcher import Admission, Batcher, Overloaded
from segcli.serve.codec import RequestError
from segcli.serve.config import ServeConfig
from segcli.serve.metrics import Metrics

T = TypeVar("T")
MEDIA = {"png": "image/png", "overlay": "image/png", "json": "application/json"}


@dataclass(frozen=True)
class PredictOptions:
    """A request's query options; None = the server's default."""

    format: str = "png"  # png | json | overlay
    threshold: Optional[float] = None
    tta: bool = False
    overlay: bool = False  # with json: the overlay as a data URL (the page's one request)
    quality: bool = False  # with json: the quality estimate and the error map as a data URL
    mask: bool = False  # with json: the mask PNG as a data URL (the page's download)


class Service:
    """A loaded model behind a batcher, with its admission limits and metrics."""

    def __init__(self, config: ServeConfig, predictor: Predictor, info: dict[str, Any],
                 metrics: Optional[Metrics] = None) -> None:
        self.config, self.predictor, self.model_info = config, predictor, info
        self.metrics = metrics or Metrics()
        self.admission = Admission(config.max_queue, config.pixel_budget)
        self.batcher = Batcher(predictor, config.max_batch, config.max_wait, self.metrics,
                               incoming=lambda: self.admission.upstream)
        self.metrics.queue_depth.read = lambda: self.batcher.depth
        self.metrics.inflight.read = lambda: self.admission.inside
        self.pool = ThreadPoolExecutor(max(1, config.io_threads), thread_name_prefix="segcli-io")
        self.page = resources.files("segcli.serve").joinpath("static", "index.html").read_text(encoding="utf-8")
        self.ready = False

    @classmethod
    def load(cls, config: ServeConfig, metrics: Optional[Metrics] = None) -> "Service":
        """Load the model with predict's inference settings (tiles of `--tile` or automatic,
        four images or tiles per pass for a tiled image, threshold 0.5 unless a request asks)."""
        path = resolve_model(config.model)
        options = InferenceOptions(device=config.device, precision=config.precision, tile=config.tile,
                                   overlap=config.overlap)
        return cls(config, load_predictor(path, options), model_info(path), metrics)

    def start(self) -> None:
        """Start the model thread after one small warm-up pass (lazy initialisation and kernel
        choice happen here, not in the first client's request)."""
        limit_threads(self.predictor, self.config.workers)
        side = 2 * self.predictor.size_multiple
        self.predictor.segment_batch([np.zeros((side, side, self.predictor.info.in_channels), np.uint8)])
        self.batcher.start()
        self.ready = True

    def stop(self) -> None:
        """Graceful shutdown: the queued images are finished, then the threads end."""
        self.ready = False
        self.batcher.close(self.config.graceful_timeout)
        self.pool.shutdown(wait=True, cancel_futures=True)

    @property
    def healthy(self) -> bool:
        return self.ready and self.batcher.alive

    def retry_after(self) -> int:
        """Seconds until the images inside are likely done: what a 503 asks clients to wait."""
        return max(1, min(60, math.ceil(self.admission.inside * self.batcher.seconds_per_image)))

    def overloaded(self, why: str) -> RequestError:
        return RequestError(503, f"server busy: {why}; retry later", "overloaded", self.retry_after())

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def predict(self, request: Any, opts: PredictOptions) -> tuple[bytes, str]:
        """One request to (body, media type), or a RequestError."""
        adm = self.admission
        if not self.ready:
            raise self.overloaded("the model is not ready")
        if not adm.enter():
            await _drain(request, self.config.max_body)  # answer the client, keep no bytes
            raise self.overloaded(f"{adm.max_requests} requests inside already (--max-queue)")
        pixels, handed_over = 0, False
        try:
            if opts.quality and self.predictor.estimator is None:
                raise RequestError(400, "quality=true: " + (self.predictor.no_estimator
                                                            or no_estimator("the served model")), "bad_request")
            data = await codec.read_body(request, self.config.max_body)
            n = codec.check_image(data, self.config.max_pixels)
            if not adm.reserve(n):
                raise self.overloaded(f"{adm.pixels} pixels being processed; no room for {n} more")
            pixels = n
            image = await self._io(codec.decode, data)
            del data
            # a threshold means nothing to a multi-class model: it must not split batches either
            use_default = opts.threshold is None or not self.predictor.info.binary
            threshold = self.predictor.threshold if use_default else opts.threshold
            try:
                future = self.batcher.submit(image, opts.tta, threshold, opts.quality and opts.format == "json")
            except Overloaded as e:
                raise self.overloaded(str(e)) from None
            adm.handed_over()
            handed_over = True
            try:
                seg = await asyncio.wrap_future(future)
            except Exception as e:  # logged by the model thread; the other requests are unaffected
                raise RequestError(500, f"the model failed on this image ({type(e).__name__}: {e})", "internal") from None
            return await self._io(self._answer, image, seg, opts, threshold), MEDIA[opts.format]
        finally:
            adm.leave(pixels, handed_over)

    def _answer(self, image: np.ndarray, seg: Segmentation, opts: PredictOptions, threshold: float) -> bytes:
        info, labels = self.predictor.info, seg.labels
        if opts.format == "png":
            return codec.mask_png(labels, info)
        if opts.format == "overlay":
            return codec.overlay_png(image, labels, info)
        over = codec.overlay_png(image, labels, info, seg.error) if opts.overlay else None
        mask = codec.mask_png(labels, info) if opts.mask else None
        return json.dumps(codec.describe(labels, info, threshold, opts.tta, over, seg.quality, seg.error, mask)).encode()


async def _drain(request: Any, limit: int) -> None:
    """Read and drop a refused request's body (up to `limit` bytes), so that the client, still
    sending, receives the 503 instead of a reset connection."""
    n = 0
    try:
        async for chunk in request.stream():
            n += len(chunk)
            if n > limit:
                return
    except Exception:
        return


def limit_threads(predictor: Predictor, workers: int) -> None:
    """With N worker processes on one machine, each torch model gets 1/N of the cores
    (otherwise N processes each start a thread per core and fight over them)."""
    torch = getattr(predictor.backend, "torch", None)  # a TorchBackend; ONNX never imports torch
    if workers > 1 and torch is not None:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))

