"""`segcli serve`: the model as an HTTP service and a web page."""

from __future__ import annotations

from typing import Optional

import typer

from segcli.cli.app import app
from segcli.cli.common import configurable
from segcli.cli import options as opt


@app.command()
@configurable
def serve(
    model: Optional[str] = opt.MODEL,
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface, e.g. in a container)."),
    port: int = typer.Option(8000, help="Port to listen on (0: any free port; the address is printed on stdout)."),
    workers: int = typer.Option(1, help="Server processes on this machine, each with its own copy of the model."),
    max_batch: int = typer.Option(8, "--max-batch", help="Most same-size requests sharing one forward pass."),
    max_wait_ms: float = typer.Option(10.0, "--max-wait-ms", help="Longest a request waits for others to batch with."),
    max_queue: int = typer.Option(64, "--max-queue", help="Most requests inside the server at once; more get 503 + Retry-After."),
    max_body_mb: float = typer.Option(50.0, "--max-body-mb", help="Largest request body in MiB; larger get 413."),
    max_pixels: int = typer.Option(64_000_000, "--max-pixels", help="Largest image in pixels (width x height); larger get 413."),
    tile: Optional[int] = opt.TILE,
    no_tile: bool = opt.NO_TILE,
    overlap: float = opt.OVERLAP,
    device: str = opt.DEVICE,
    precision: str = opt.PRECISION,
    graceful_timeout: float = typer.Option(30.0, "--graceful-timeout", help="On SIGTERM: seconds the requests inside get to finish."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="One stderr line per request."),
) -> None:
    """Serve a model over HTTP: POST /predict, GET /healthz, /model, /metrics, and a page at /."""
    from segcli.errors import UserError
    from segcli.serve import ServeConfig, serve as run

    if tile is not None and no_tile:
        raise UserError("--tile and --no-tile contradict each other; pass one")
    if tile is not None and tile < 1:
        raise UserError(f"--tile {tile}: a tile side in pixels; --no-tile turns tiling off")
    run(ServeConfig(model=model, host=host, port=port, workers=workers, max_batch=max_batch,
                    max_wait=max_wait_ms / 1000.0, max_queue=max_queue, max_body=int(max_body_mb * 2**20),
                    max_pixels=max_pixels, tile=0 if no_tile else tile, overlap=overlap, device=device,
                    precision=precision, graceful_timeout=graceful_timeout, access_log=access_log))
