"""Overlap file decoding and encoding with compute: a prefetching reader and a bounded writer.

PIL's PNG/JPEG codecs and zlib release the GIL, as do torch and ONNX Runtime kernels, so
a couple of threads keep the model busy while the next images decode and the last masks
encode. Both ends are bounded (in pixels and in pending jobs) so huge images cannot pile
up in memory.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Generic, Iterable, Iterator, Optional, TypeVar

from segcli.errors import DataError

T = TypeVar("T")
R = TypeVar("R")

# Decoded pixels allowed in flight ahead of the model (one image is always allowed).
PREFETCH_PIXELS = 48_000_000


class Loaded(Generic[T]):
    """One prefetched item: the loaded value, or the DataError message that loading raised."""

    __slots__ = ("key", "value", "error", "seconds")

    def __init__(self, key: Any, value: Optional[T], error: Optional[str], seconds: float) -> None:
        self.key, self.value, self.error, self.seconds = key, value, error, seconds


def _timed(load: Callable[[Any], T], key: Any) -> Loaded[T]:
    t0 = time.perf_counter()
    try:
        return Loaded(key, load(key), None, time.perf_counter() - t0)
    except DataError as e:
        return Loaded(key, None, str(e), time.perf_counter() - t0)


def prefetch(
    keys: Iterable[Any], load: Callable[[Any], T], pixels: Callable[[Any], int],
    workers: int = 2, max_ahead: int = 8, max_pixels: int = PREFETCH_PIXELS,
) -> Iterator[Loaded[T]]:
    """Yield `load(key)` for every key, in order, loading up to `max_ahead` keys ahead.

    `pixels(key)` estimates an item's size cheaply (from the file header) so that at most
    `max_pixels` are decoded ahead. A DataError from `load` becomes `Loaded.error`.
    """
    it = iter(keys)
    queue: deque[tuple[int, Future[Loaded[T]]]] = deque()
    inflight = 0
    nxt: Optional[tuple[Any, int]] = None
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="segcli-read") as pool:
        while True:
            while len(queue) < max_ahead:
                if nxt is None:
                    key = next(it, _END)
                    if key is _END:
                        break
                    nxt = (key, max(0, pixels(key)))
                if queue and inflight + nxt[1] > max_pixels:
                    break
                inflight += nxt[1]
                queue.append((nxt[1], pool.submit(_timed, load, nxt[0])))
                nxt = None
            if not queue:
                return
            px, fut = queue.popleft()
            inflight -= px
            yield fut.result()


_END = object()


class Writer:
    """Runs output jobs on worker threads, at most `max_pending` at a time, reporting in order.

    `submit(job, tag)` queues job(); `ready()` yields (tag, job result) for finished jobs in
    submission order; `close()` waits for the rest. A job's exception re-raises in the caller.
    """

    def __init__(self, workers: int = 2, max_pending: int = 4) -> None:
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="segcli-write")
        self.max_pending = max(1, max_pending)
        self.pending: deque[tuple[Any, Future[Any]]] = deque()
        self.running: set[Future[Any]] = set()  # not the whole queue: finished jobs wait there for ready()

    def submit(self, job: Callable[[], R], tag: Any) -> None:
        if len(self.running) >= self.max_pending:  # bound the memory that queued outputs hold
            wait(list(self.running), return_when=FIRST_COMPLETED)
        fut = self.pool.submit(job)
        self.running.add(fut)
        fut.add_done_callback(self.running.discard)
        self.pending.append((tag, fut))

    def ready(self, wait: bool = False) -> Iterator[tuple[Any, Any]]:
        while self.pending and (wait or self.pending[0][1].done()):
            tag, fut = self.pending.popleft()
            yield tag, fut.result()

    def close(self) -> Iterator[tuple[Any, Any]]:
        try:
            yield from self.ready(wait=True)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


class Segmented:
    """A prefetched item after the model: its Segmentation (segcli.infer.predictor: labels, and
    probabilities, error map and quality when asked) or the load error."""

    __slots__ = ("item", "seg", "seconds")

    def __init__(self, item: Loaded[Any], seg: Any = None, seconds: float = 0.0) -> None:
        self.item, self.seg, self.seconds = item, seg, seconds

    @property
    def labels(self) -> Any:
        return self.seg.labels if self.seg is not None else None

    @property
    def probs(self) -> Any:
        return self.seg.probs if self.seg is not None else None


def segment_stream(
    predictor: Any, loaded: Iterable[Loaded[Any]], image_of: Callable[[Any], Any],
    keep_probs: bool = False, probs_alloc: Optional[Callable[[Any], Any]] = None,
) -> Iterator[Segmented]:
    """Run the model over prefetched items, in order, exactly as `segcli predict` does.

    Consecutive same-size images that need no tiling share a forward pass of up to
    `predictor.batch_size`; an image large enough to tile goes alone through the sliding
    window, its probabilities (when kept) written into `probs_alloc(key)(shape)`.
    """
    batch: list[Loaded[Any]] = []

    def flush() -> Iterator[Segmented]:
        if not batch:
            return
        t0 = time.perf_counter()
        outs = predictor.segment_batch([image_of(b.value) for b in batch], keep_probs=keep_probs)
        each = (time.perf_counter() - t0) / len(batch)
        done = [Segmented(b, seg, each) for b, seg in zip(batch, outs)]
        batch.clear()
        yield from done

    for item in loaded:
        if item.error is not None:
            yield from flush()
            yield Segmented(item)
            continue
        image = image_of(item.value)
        h, w = image.shape[:2]
        if predictor.tile_for(h, w):
            yield from flush()
            t0 = time.perf_counter()
            alloc = probs_alloc(item.key) if keep_probs and probs_alloc else None
            seg = predictor.segment(image, alloc)
            yield Segmented(item, seg, time.perf_counter() - t0)
            continue
        if batch and (image.shape[:2] != image_of(batch[0].value).shape[:2] or len(batch) >= predictor.batch_size):
            yield from flush()
        batch.append(item)
    yield from flush()
