"""The gateway's HTTP routes.

uvicorn gateway.app:app --host 127.0.0.1 --port 8090 --loop uvloop --http httptools
"""

import contextlib
import logging
import time

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.batcher import Coalescer
from gateway.config import Settings, load_settings
from gateway.errors import (
    BodyTooLarge,
    GatewayError,
    UnsupportedMediaType,
    UpstreamUnavailable,
)
from gateway.openapi import openapi_document
from gateway.schema import BatchPrediction, Prediction, decode_batch, decode_predict
from gateway.triton import TritonScorer

logger = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
HEALTHY = b'{"status":"healthy"}'


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    content = body if isinstance(body, bytes) else _encode(body)
    return Response(content, status, headers, media_type="application/json")


class Gateway:
    """Routes plus the per-worker state they share: the Triton client and batcher."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.scorer: TritonScorer | None = None
        self.coalescer: Coalescer | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette):
        self.scorer = TritonScorer(self.settings)
        self.coalescer = Coalescer(
            self.scorer.score,
            self.settings.max_batch_rows,
            self.settings.coalesce_window_us,
        )
        try:
            yield
        finally:
            await self.coalescer.drain()
            await self.scorer.close()

    async def _body(self, request: Request) -> bytes:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise UnsupportedMediaType(
                f"content-type is {content_type or 'missing'!r}; expected "
                "'application/json'",
                field="content-type",
            )
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(f"the body is {declared} bytes; at most {limit} allowed")
        body = await request.body()
        if len(body) > limit:
            raise BodyTooLarge(
                f"the body is {len(body)} bytes; at most {limit} allowed"
            )
        return body

    async def _threshold(self) -> float:
        if self.scorer.threshold is None:
            await self.scorer.load_threshold()
        return self.scorer.threshold

    async def predict(self, request: Request) -> Response:
        rows = decode_predict(await self._body(request))
        started = time.perf_counter()
        threshold = await self._threshold()
        scores, version = await self.coalescer.score(rows)
        score = float(scores[0])
        return json_response(
            Prediction(
                fraud_score=score,
                is_fraud=score >= threshold,
                inference_time_ms=round((time.perf_counter() - started) * 1e3, 3),
                model_version=version,
            )
        )

    async def predict_batch(self, request: Request) -> Response:
        rows = decode_batch(await self._body(request), self.settings.max_batch_rows)
        started = time.perf_counter()
        threshold = await self._threshold()
        scores, version = await self.coalescer.score(rows)
        elapsed_ms = round((time.perf_counter() - started) * 1e3, 3)
        predictions = [
            Prediction(float(s), bool(s >= threshold), elapsed_ms, version)
            for s in scores
        ]
        return json_response(BatchPrediction(predictions, version))

    async def health(self, request: Request) -> Response:
        return json_response(HEALTHY)

    async def ready(self, request: Request) -> Response:
        if await self.scorer.is_ready():
            return json_response({"status": "ready", "model": self.settings.model_name})
        error = UpstreamUnavailable(f"model {self.settings.model_name!r} is not ready")
        return json_response(error.body(), error.status, error.headers())

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi_document(self.settings))


async def on_gateway_error(request: Request, exc: GatewayError) -> Response:
    return json_response(exc.body(), exc.status, exc.headers())


async def on_http_error(request: Request, exc: HTTPException) -> Response:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
    body = {
        "error": {
            "code": code,
            "message": f"{request.method} {request.url.path}: {exc.detail}",
        }
    }
    return json_response(body, exc.status_code, exc.headers)


async def on_unexpected_error(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s", request.url.path)
    body = {"error": {"code": "internal_error", "message": "internal error"}}
    return json_response(body, 500)


def create_app(settings: Settings | None = None) -> Starlette:
    gateway = Gateway(settings or load_settings())
    routes = [
        Route("/predict", gateway.predict, methods=["POST"]),
        Route("/predict/batch", gateway.predict_batch, methods=["POST"]),
        Route("/health", gateway.health, methods=["GET"]),
        Route("/ready", gateway.ready, methods=["GET"]),
        Route("/openapi.json", gateway.openapi, methods=["GET"]),
    ]
    handlers = {
        GatewayError: on_gateway_error,
        HTTPException: on_http_error,
        Exception: on_unexpected_error,
    }
    app = Starlette(
        routes=routes, exception_handlers=handlers, lifespan=gateway.lifespan
    )
    app.state.gateway = gateway
    return app


app = create_app()
