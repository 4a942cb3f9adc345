"""Running the service: bind the port, load the model, run uvicorn in one process or N workers.

The port is bound before anything else (a taken port is a one-line error at once) and the
model is loaded before the first request (a bad model file is a one-line error, exit 2). On
SIGTERM uvicorn stops accepting connections, lets the requests inside finish (at most
`graceful_timeout` seconds), the model thread finishes its queue, and the command exits 0;
Ctrl-C (SIGINT) drains the same way and exits 130, as every segcli command does.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import signal
import socket
from typing import Any

from segcli.errors import Interrupted, SegcliError, UserError
from segcli.serve.config import ENV_VAR, ServeConfig, require_extra

INTERRUPTED = "interrupted (Ctrl-C); the requests inside were answered first"


def serve(config: ServeConfig) -> None:
    """`segcli serve`: blocks until SIGTERM or Ctrl-C."""
    require_extra()
    from segcli.infer.predictor import resolve_model

    config = dataclasses.replace(config.check(), model=str(resolve_model(config.model)))
    sock = bind(config.host, config.port)
    port = sock.getsockname()[1]
    try:
        if config.workers == 1:
            _run_one(config, sock, port)
        else:
            _run_workers(config, sock, port)
    finally:
        sock.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port), or a one-line error naming the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # connections arriving while the model loads wait here
    except OSError as e:
        sock.close()
        raise UserError(f"{host}:{port}: cannot listen ({e.strerror or e}); choose another --port or --host") from None
    sock.set_inheritable(True)  # worker processes serve the same socket
    return sock


def _uvicorn_options(config: ServeConfig) -> dict[str, Any]:
    from segcli import console

    return {"log_config": _log_config(), "log_level": "warning" if console.QUIET else "info",
            "access_log": config.access_log, "timeout_graceful_shutdown": config.graceful_timeout,
            # a last bound on open connections (the service's own limit answers 503 long before)
            "limit_concurrency": max(1000, 8 * config.max_queue), "lifespan": "on"}


def _run_one(config: ServeConfig, sock: socket.socket, port: int) -> None:
    import uvicorn

    from segcli.serve.app import create_app
    from segcli.serve.service import Service

    service = Service.load(config)
    server = uvicorn.Server(uvicorn.Config(create_app(config, service), **_uvicorn_options(config)))
    _announce(config, port, service.model_info)
    # uvicorn re-raises the signal it drained for once it is done, to these handlers: SIGTERM
    # then ends the command normally (exit 0) instead of killing it, SIGINT with exit 130
    interrupted: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: interrupted.append(1))
    server.run(sockets=[sock])
    if not server.started:
        raise SegcliError("the server did not start (see the messages above)")
    if interrupted:
        raise Interrupted(INTERRUPTED)


def _run_workers(config: ServeConfig, sock: socket.socket, port: int) -> None:
    import uvicorn

    from segcli.infer.modelinfo import model_info

    info = model_info(config.model)  # a bad model file: one line, before any worker starts
    os.environ[ENV_VAR] = config.to_json()
    uv = uvicorn.Config("segcli.serve.app:app_from_env", factory=True, workers=config.workers,
                        **_uvicorn_options(config))
    _announce(config, port, info)
    supervisor = _supervisor_class()(uv, sockets=[sock])
    supervisor.run()  # on SIGTERM / SIGINT: stops the workers (each drains), waits for them
    if supervisor.interrupted:
        raise Interrupted(INTERRUPTED)


def _supervisor_class() -> type:
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        """uvicorn's worker supervisor, remembering a Ctrl-C for the exit code."""

        interrupted = False

        def handle_int(self) -> None:
            self.interrupted = True
            super().handle_int()

    return Supervisor


def _announce(config: ServeConfig, port: int, info: dict[str, Any]) -> None:
    """The address on stdout (scripts read it, e.g. with --port 0); what is served on stderr."""
    from segcli.console import info as note

    host = f"[{config.host}]" if ":" in config.host else config.host
    url = f"http://{host}:{port}"
    workers = f", {config.workers} worker processes" if config.workers > 1 else ""
    note(f"serving {info.get('path')} ({info.get('task')}, {info.get('num_classes')} classes{workers}) at {url} "
         f"- page {url}/, API docs {url}/docs")
    print(url, flush=True)


def _log_config() -> dict[str, Any]:
    """uvicorn's logging with every line on stderr (stdout carries results only)."""
    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["handlers"]["access"]["stream"] = "ext://sys.stderr"
    cfg["loggers"]["segcli"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return cfg
