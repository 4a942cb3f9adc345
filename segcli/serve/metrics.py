"""Prometheus text exposition, written by hand: a few counters, gauges and histograms.

No client library: the format is simple, and one dependency fewer for the serve extra.
Values are updated from the event loop and the model thread, so every change holds a lock.
Each worker process keeps its own numbers (see docs/deployment.md).
"""

from __future__ import annotations

import bisect
import threading
from typing import Callable, Iterable, Sequence

Labels = tuple[tuple[str, str], ...]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{v}"' for k, v in labels] + ([extra] if extra else [])
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


class Counter:
    """A monotonically increasing number per label set."""

    kind = "counter"

    def __init__(self, name: str, help: str, lock: threading.Lock) -> None:
        self.name, self.help, self.lock = name, help, lock
        self.values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self.lock:
            self.values[key] = self.values.get(key, 0.0) + amount

    def lines(self) -> Iterable[str]:
        for key, v in sorted(self.values.items()):
            yield f"{self.name}{_labels(key)} {_num(v)}"


class Gauge:
    """A value read when scraped (queue depth, requests in flight)."""

    kind = "gauge"

    def __init__(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.name, self.help, self.read = name, help, read

    def lines(self) -> Iterable[str]:
        yield f"{self.name} {_num(self.read())}"


class Histogram:
    """Cumulative buckets, sum and count per label set, as Prometheus histograms are."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Sequence[float], lock: threading.Lock) -> None:
        self.name, self.help, self.lock = name, help, lock
        self.buckets = tuple(buckets)
        self.series: dict[Labels, list[float]] = {}  # per-bucket counts (+Inf last), sum, count

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self.lock:
            s = self.series.setdefault(key, [0.0] * (len(self.buckets) + 3))
            s[bisect.bisect_left(self.buckets, value)] += 1
            s[-2] += value
            s[-1] += 1

    def lines(self) -> Iterable[str]:
        for key, s in sorted(self.series.items()):
            running = 0.0
            for bound, n in zip([*map(_num, self.buckets), "+Inf"], s):
                running += n
                le = 'le="' + bound + '"'
                yield f"{self.name}_bucket{_labels(key, le)} {_num(running)}"
            yield f"{self.name}_sum{_labels(key)} {_num(s[-2])}"
            yield f"{self.name}_count{_labels(key)} {_num(s[-1])}"


class Metrics:
    """The server's numbers. `queue_depth` and `inflight` are read from the live objects."""

    def __init__(self, queue_depth: Callable[[], float] = lambda: 0, inflight: Callable[[], float] = lambda: 0) -> None:
        lock = threading.Lock()
        self.requests = Counter("segcli_requests_total", "HTTP requests answered, by endpoint and status code.", lock)
        self.errors = Counter("segcli_errors_total", "Requests answered with an error, by reason.", lock)
        self.latency = Histogram("segcli_request_duration_seconds",
                                 "Time from a request's arrival to its answer, by endpoint.", LATENCY_BUCKETS, lock)
        self.batch_size = Histogram("segcli_batch_size", "Images per forward pass (tiled images count 1).",
                                    BATCH_BUCKETS, lock)
        self.batch_seconds = Histogram("segcli_batch_seconds", "Seconds of model work per batch.",
                                       LATENCY_BUCKETS, lock)
        self.images = Counter("segcli_images_total", "Images segmented.", lock)
        self.queue_depth = Gauge("segcli_queue_depth", "Images waiting for the model.", queue_depth)
        self.inflight = Gauge("segcli_inflight_requests",
                              "Predict requests inside the server (reading, waiting or running).", inflight)

    def render(self) -> str:
        """The whole exposition, `text/plain; version=0.0.4`."""
        out: list[str] = []
        for m in (self.requests, self.errors, self.latency, self.batch_size, self.batch_seconds, self.images,
                  self.queue_depth, self.inflight):
            out += [f"# HELP {m.name} {m.help}", f"# TYPE {m.name} {m.kind}", *m.lines()]
        return "\n".join(out) + "\n"
