"""Dynamic batching and admission: how concurrent requests share the model, and how many may wait.

One model thread runs every forward pass, off the event loop: torch and ONNX Runtime release
the GIL and use every core themselves, so a second model thread would only make the two fight
over the cores. Requests of the same size and options that wait together share one
`Predictor.segment_batch` call (the code `segcli predict` batches with); an image large enough
to tile goes alone through `Predictor.segment`, as in predict. The first request of a batch
waits at most `max_wait` for company, and only while more requests are on their way, so a lone
client pays no wait at all.

`Admission` bounds what the server holds (requests and decoded pixels); past it a request is
answered 503 at once instead of queueing without bound.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from segcli.infer.predictor import Predictor, Segmentation
from segcli.serve.metrics import Metrics

log = logging.getLogger("segcli.serve")


class Overloaded(Exception):
    """The server holds all it may; the client should retry later (HTTP 503)."""


@dataclass
class Job:
    """One image waiting for the model; `key` groups jobs that can share a forward pass
    (None: a tiled image, which runs alone)."""

    image: np.ndarray
    tta: bool
    threshold: float
    key: Optional[tuple[int, int, bool, float, bool]]
    quality: bool = False
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)


class Batcher:
    """The model thread and its queue. `submit` returns a Future of the image's Segmentation
    (segcli.infer.predictor: its HxW uint8 labels, and error map and quality when asked)."""

    def __init__(self, predictor: Predictor, max_batch: int, max_wait: float, metrics: Metrics,
                 incoming: Callable[[], int] = lambda: 0) -> None:
        self.predictor, self.max_batch, self.max_wait = predictor, max_batch, max_wait
        self.metrics = metrics
        self.incoming = incoming  # requests admitted but not yet submitted: worth waiting for
        self._queue: deque[Job] = deque()
        self._cv = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="segcli-model", daemon=True)
        self.seconds_per_image = 0.0  # moving average, for Retry-After

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closing

    def start(self) -> None:
        self._thread.start()

    def submit(self, image: np.ndarray, tta: bool, threshold: float, quality: bool = False) -> Future:
        h, w = image.shape[:2]
        key = None if self.predictor.tile_for(h, w) else (h, w, tta, threshold, quality)
        job = Job(image, tta, threshold, key, quality)
        with self._cv:
            if self._closing:
                raise Overloaded("the server is shutting down")
            self._queue.append(job)
            self._cv.notify()
        return job.future

    def close(self, timeout: Optional[float] = None) -> None:
        """Finish what is queued, then stop the thread (graceful shutdown)."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            self._run(batch)

    def _take(self) -> Optional[list[Job]]:
        """The next batch: the oldest job plus queued jobs with its key, after a bounded wait."""
        with self._cv:
            while True:
                while not self._queue:
                    if self._closing:
                        return None
                    self._cv.wait()
                first = self._queue[0]
                batch = [first] if first.key is None else self._gather(first)
                for job in batch:
                    self._queue.remove(job)
                # a job whose caller went away (cancelled) is dropped here, before any work
                batch = [j for j in batch if j.future.set_running_or_notify_cancel()]
                if batch:
                    return batch

    def _gather(self, first: Job) -> list[Job]:
        deadline = first.queued_at + self.max_wait
        while True:
            batch = [j for j in self._queue if j.key == first.key][: self.max_batch]
            left = deadline - time.monotonic()
            if len(batch) >= self.max_batch or left <= 0 or self._closing or self.incoming() <= 0:
                return batch
            self._cv.wait(left)

    def _run(self, batch: list[Job]) -> None:
        """Segment a batch; a batch that fails is retried one job at a time, so one bad image
        fails only its own request."""
        t0 = time.perf_counter()
        try:
            segs = self._segment(batch)
        except Exception as e:
            if len(batch) > 1:
                for job in batch:
                    self._run([job])
                return
            log.exception("model failed on one image")
            batch[0].future.set_exception(e)
            return
        seconds = time.perf_counter() - t0
        self.metrics.batch_size.observe(len(batch))
        self.metrics.batch_seconds.observe(seconds)
        self.metrics.images.inc(len(batch))
        per = seconds / len(batch)
        self.seconds_per_image = per if not self.seconds_per_image else 0.9 * self.seconds_per_image + 0.1 * per
        for job, seg in zip(batch, segs):
            job.future.set_result(seg)

    def _segment(self, batch: list[Job]) -> list[Segmentation]:
        first = batch[0]
        pred = dataclasses.replace(self.predictor, tta=first.tta, threshold=first.threshold, quality=first.quality)
        if first.key is None:
            return [pred.segment(first.image)]
        return pred.segment_batch([j.image for j in batch])


class Admission:
    """How much the server holds: requests inside it (from arrival to answer) and their decoded
    pixels. Used from the event loop only. `upstream` = admitted requests not yet handed to the
    model (reading or decoding), which the batcher may wait for."""

    def __init__(self, max_requests: int, max_pixels: int) -> None:
        self.max_requests, self.max_pixels = max_requests, max_pixels
        self.inside = 0
        self.pixels = 0
        self.upstream = 0

    def enter(self) -> bool:
        if self.inside >= self.max_requests:
            return False
        self.inside += 1
        self.upstream += 1
        return True

    def reserve(self, pixels: int) -> bool:
        """Room for an image of `pixels` (one image is always allowed into an empty server)."""
        if self.pixels and self.pixels + pixels > self.max_pixels:
            return False
        self.pixels += pixels
        return True

    def handed_over(self) -> None:
        self.upstream -= 1

    def leave(self, pixels: int, handed_over: bool) -> None:
        self.inside -= 1
        self.pixels -= pixels
        if not handed_over:
            self.upstream -= 1
