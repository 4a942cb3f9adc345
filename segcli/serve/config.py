"""What `segcli serve` is told: one frozen dataclass, checked once, passed to every part.

The command line builds it; `--workers N` processes receive it through an environment
variable (uvicorn starts each worker from an import string, so it cannot be handed over as
an object).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from dataclasses import dataclass
from typing import Optional

from segcli.errors import UserError

# Set for worker processes: the ServeConfig as JSON.
ENV_VAR = "SEGCLI_SERVE_CONFIG"
# What the serve extra brings (import names).
EXTRA_MODULES = ("fastapi", "uvicorn", "multipart")


@dataclass(frozen=True)
class ServeConfig:
    """Options of `segcli serve`; sizes in bytes and pixels, times in seconds."""

    model: Optional[str] = None  # a .pt, run folder or .onnx; None = the newest run's best.pt
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_batch: int = 8  # requests of one size sharing a forward pass
    max_wait: float = 0.010  # how long the first request of a batch may wait for company
    max_queue: int = 64  # requests inside the server at once (reading, waiting, running); more get 503
    max_body: int = 50 * 2**20  # bytes of one request body; more get 413
    max_pixels: int = 64_000_000  # pixels of one image (8000x8000); more get 413
    tile: Optional[int] = None  # as predict's --tile / --no-tile (0) / --overlap
    overlap: float = 0.25
    device: str = "auto"
    precision: str = "auto"
    io_threads: int = 2  # threads decoding uploads and encoding answers, beside the model's
    graceful_timeout: float = 30.0  # on SIGTERM: seconds in-flight requests get to finish
    access_log: bool = True

    @property
    def pixel_budget(self) -> int:
        """Decoded pixels allowed inside the server at once: room for two of the largest images
        (or many small ones), so memory stays bounded whatever clients send."""
        return max(2 * self.max_pixels, 64 * 1024 * 1024)

    def check(self) -> "ServeConfig":
        """The values, checked before anything starts (one line naming the option)."""
        rules = [
            (1 <= self.port <= 65535 or self.port == 0, f"--port {self.port}: must be 0-65535"),
            (self.workers >= 1, "--workers must be at least 1"),
            (self.max_batch >= 1, "--max-batch must be at least 1"),
            (0 <= self.max_wait <= 10, "--max-wait-ms must be between 0 and 10000"),
            (self.max_queue >= 1, "--max-queue must be at least 1"),
            (self.max_body >= 1024, "--max-body-mb must be at least 0.001 (1 kB)"),
            (self.max_pixels >= 1, "--max-pixels must be at least 1"),
            (0.0 <= self.overlap <= 0.9, f"--overlap {self.overlap}: must be between 0 and 0.9"),
            (self.graceful_timeout >= 0, "--graceful-timeout must not be negative"),
        ]
        for ok, message in rules:
            if not ok:
                raise UserError(message)
        return self

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_env(cls) -> "ServeConfig":
        """The config a `--workers N` parent left for this worker process."""
        text = os.environ.get(ENV_VAR)
        if not text:
            raise RuntimeError(f"{ENV_VAR} is not set; start workers with `segcli serve --workers N`")
        return cls(**json.loads(text))


def require_extra() -> None:
    """A one-line exit-2 error naming the extra when the web stack is not installed."""
    import sys

    for name in EXTRA_MODULES:
        # sys.modules[name] = None (tests; broken installs) means "cannot be imported"
        missing = name in sys.modules and sys.modules[name] is None
        if missing or importlib.util.find_spec(name) is None:
            raise UserError("segcli serve needs the serve extra: pip install 'segcli[serve]'")
