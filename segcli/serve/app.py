"""The HTTP surface: FastAPI routes over a Service, error answers as JSON, request metrics.

`create_app` builds the app around a loaded Service (one process) or loads the model in the
app's start-up (each `--workers N` process, through `app_from_env`). FastAPI documents the
endpoints at /docs and /openapi.json.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Literal, Optional

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from segcli.serve.codec import RequestError
from segcli.serve.config import ServeConfig
from segcli.serve.metrics import Metrics
from segcli.serve.service import PredictOptions, Service
from segcli.version import __version__

ENDPOINTS = ("/predict", "/healthz", "/model", "/metrics", "/")

_IMAGE = {"schema": {"type": "string", "format": "binary"}}
PREDICT_BODY = {"requestBody": {"required": True, "description": "The image: a multipart upload in the field "
                "`file` (`curl -F file=@img.png`), or the file's bytes as the body (`curl --data-binary @img.png`).",
                "content": {"multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                                                 "properties": {"file": _IMAGE["schema"]}}},
                            "image/png": _IMAGE, "image/jpeg": _IMAGE, "image/tiff": _IMAGE,
                            "application/octet-stream": _IMAGE}}}
_ERROR = {"content": {"application/json": {"example": {"error": "what went wrong", "status": 400}}}}
PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The mask PNG (`format=png`), the overlay PNG (`format=overlay`) or the JSON "
                         "description (`format=json`)",
          "content": {"image/png": {}, "application/json": {}}},
    400: {"description": "Unreadable body or image, or a bad query parameter", **_ERROR},
    413: {"description": "Body over --max-body-mb or image over --max-pixels", **_ERROR},
    415: {"description": "Not an image in a format segcli reads", **_ERROR},
    503: {"description": "Queue full (--max-queue): retry after the Retry-After seconds", **_ERROR},
}


def error_response(status: int, message: str, retry_after: Optional[int] = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


class RequestMetrics:
    """ASGI middleware: every answer counted by endpoint and status code, and timed."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0, status = time.perf_counter(), [500]

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = scope.get("path", "")
            endpoint = path if path in ENDPOINTS else "other"
            self.metrics.requests.inc(endpoint=endpoint, code=str(status[0]))
            self.metrics.latency.observe(time.perf_counter() - t0, endpoint=endpoint)


def create_app(config: ServeConfig, service: Optional[Service] = None) -> FastAPI:
    """The app. Without a `service`, the model loads when the app starts (worker processes)."""
    metrics = service.metrics if service is not None else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = service or Service.load(config, metrics)
        svc.start()
        app.state.service = svc
        try:
            yield
        finally:
            svc.stop()  # after uvicorn drained the connections: finishes what is queued

    app = FastAPI(title="segcli serve", version=__version__, lifespan=lifespan,
                  description="Masks from a segcli model over HTTP: the masks `segcli predict` writes.")
    app.add_middleware(RequestMetrics, metrics=metrics)
    _add_error_handlers(app, metrics)
    _add_routes(app)
    return app


def _add_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(RequestError)
    async def request_error(request: Request, e: RequestError) -> JSONResponse:
        metrics.errors.inc(reason=e.reason)
        return error_response(e.status, e.message, e.retry_after)

    @app.exception_handler(RequestValidationError)
    async def bad_query(request: Request, e: RequestValidationError) -> JSONResponse:
        metrics.errors.inc(reason="bad_request")
        problems = "; ".join(f"{'.'.join(map(str, err['loc'][1:])) or 'request'}: {err['msg']}" for err in e.errors())
        return error_response(400, f"bad query parameter: {problems}")

    @app.exception_handler(Exception)
    async def internal(request: Request, e: Exception) -> JSONResponse:
        metrics.errors.inc(reason="internal")  # uvicorn logs the traceback
        return error_response(500, f"internal error ({type(e).__name__}: {e}); the server keeps running")


def _add_routes(app: FastAPI) -> None:
    @app.post("/predict", response_class=Response, openapi_extra=PREDICT_BODY, responses=PREDICT_RESPONSES)
    async def predict(
        request: Request,
        fmt: Literal["png", "json", "overlay"] = Query("png", alias="format", description=(
            "png: the mask `segcli predict` writes; overlay: the image with the mask blended over it; "
            "json: size and each class's share, name and colour")),
        threshold: Optional[float] = Query(None, ge=0, le=1, description="Foreground probability threshold "
                                                                         "(binary models; default 0.5)"),
        tta: bool = Query(False, description="Average over flips (4x the compute)"),
        overlay: bool = Query(False, description="With format=json: add the overlay PNG as a data URL"),
        quality: bool = Query(False, description="With format=json: add the label-free quality estimate (estimated "
                                                 "mIoU; binary: Dice) and the error map PNG as a data URL (models "
                                                 "holding a quality estimator), under `quality` and `error_map`"),
        mask: bool = Query(False, description="With format=json: add the mask PNG (format=png's) as a data URL"),
    ) -> Response:
        """Segment one image."""
        service: Service = request.app.state.service
        body, media = await service.predict(request, PredictOptions(fmt, threshold, tta, overlay, quality, mask))
        return Response(body, media_type=media)

    @app.get("/healthz")
    async def healthz(request: Request) -> JSONResponse:
        """Ready when the model is loaded and its thread runs: a load balancer's readiness probe."""
        service: Service = request.app.state.service
        if not service.healthy:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "model": service.model_info.get("path")})

    @app.get("/model")
    async def model(request: Request) -> JSONResponse:
        """What `segcli info --json` says about the model."""
        return JSONResponse(request.app.state.service.model_info)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics(request: Request) -> PlainTextResponse:
        """Prometheus text: requests, errors, latency, batch sizes, queue depth."""
        text = request.app.state.service.metrics.render()
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(request.app.state.service.page)


def app_from_env() -> FastAPI:
    """The app of one `--workers N` process (uvicorn's factory, from an import string)."""
    return create_app(ServeConfig.from_env())
