"""`segcli serve`: a trained model as an HTTP service and a web page.

- config: ServeConfig (the options) and the check for the `serve` extra
- server: bind, load, run uvicorn (one process or `--workers N`), drain on SIGTERM
- app: the FastAPI routes (/predict, /healthz, /model, /metrics, /) and JSON errors
- service: one prediction's path (admit, read, check, decode, batch, encode)
- batcher: the model thread with dynamic batching, and the admission limits
- codec: bodies in; mask PNG, overlay PNG and JSON out (predict's own code)
- metrics: Prometheus text

Importing this package needs neither the web stack nor torch: the command checks for the
extra first and says which to install.
"""

from __future__ import annotations

from segcli.serve.config import ServeConfig


def serve(config: ServeConfig) -> None:
    """Run the service until SIGTERM or Ctrl-C (see segcli.serve.server)."""
    from segcli.serve.server import serve as run

    run(config)


__all__ = ["ServeConfig", "serve"]
