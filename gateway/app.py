"""The gateway's HTTP entry.

    uvicorn gateway.app:app --host 127.0.0.1 --port 8090 --loop uvloop --http httptools

The two scoring routes are served straight from ASGI: no router, no request object,
no middleware stack (measured: Starlette's routing and middleware cost about a
fifth of a /predict call's CPU here). Everything else, /health, /ready, the OpenAPI
document and the JSON 404/405 answers, goes through Starlette.
"""

import asyncio
import contextlib
import logging
import time

import msgspec
import numpy as np
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
    Overloaded,
    UnsupportedMediaType,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.openapi import openapi_document
from gateway.schema import BatchPrediction, Prediction, decode_batch, decode_predict
from gateway.triton import TritonScorer

logger = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
INTERNAL_ERROR = b'{"error":{"code":"internal_error","message":"internal error"}}'


class Gateway:
    """Scoring and probes, free of any web framework; one instance per worker."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.scorer: TritonScorer | None = None
        self.coalescer: Coalescer | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app=None):
        # the aio client binds to the running loop: create it here, not at import
        self.scorer = TritonScorer(self.settings)
        self.coalescer = Coalescer(
            self.scorer.score,
            self.settings.max_batch_rows,
            self.settings.coalesce_window_us,
            self.settings.max_inflight,
        )
        self.scorer.breaker.on_open = self.coalescer.fail_pending
        try:
            yield
        finally:
            await self.coalescer.drain()
            await self.scorer.close()

    async def _score(
        self, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, str, float]:
        """Fraud flags, scores, model version and milliseconds, or a fast 503/504."""
        # answer at once, without queueing, when Triton is known to be failing
        # or this worker already holds as much work as it can finish in time
        self.scorer.breaker.check()
        queued = self.coalescer.queued_rows
        if queued + len(rows) > self.settings.max_queued_rows:
            raise Overloaded(f"the gateway is at capacity ({queued} rows queued)")

        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.triton_timeout_s):
                scores, version = await self.coalescer.score(rows)
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"no score within {self.settings.triton_timeout_s} s"
            ) from exc
        elapsed_ms = round((time.perf_counter() - started) * 1e3, 3)
        # the threshold of the version that scored these rows, even mid-swap
        threshold = self.scorer.thresholds[version]
        return scores >= threshold, scores, version, elapsed_ms

    async def predict(self, body: bytes) -> bytes:
        flags, scores, version, elapsed_ms = await self._score(decode_predict(body))
        return _encode(
            Prediction(float(scores[0]), bool(flags[0]), elapsed_ms, version)
        )

    async def predict_batch(self, body: bytes) -> bytes:
        rows = decode_batch(body, self.settings.max_batch_rows)
        flags, scores, version, elapsed_ms = await self._score(rows)
        predictions = [
            Prediction(score, flag, elapsed_ms, version)
            for score, flag in zip(scores.tolist(), flags.tolist(), strict=True)
        ]
        return _encode(BatchPrediction(predictions, version))

    async def ready(self) -> GatewayError | None:
        if await self.scorer.is_ready():
            return None
        return UpstreamUnavailable(f"model {self.settings.model_name!r} is not ready")


class ScoringApp:
    """ASGI entry: POST /predict and /predict/batch directly, the rest via Starlette."""

    def __init__(self, gateway: Gateway, fallback: Starlette):
        self.gateway = gateway
        self.fallback = fallback
        self.state = fallback.state
        self.routes = {
            "/predict": gateway.predict,
            "/predict/batch": gateway.predict_batch,
        }
        self.max_body = gateway.settings.max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.routes.get(scope["path"])
            if handler is not None:
                await self._serve(handler, scope, receive, send)
                return
        await self.fallback(scope, receive, send)

    async def _serve(self, handler, scope, receive, send) -> None:
        headers = [(b"content-type", b"application/json")]
        try:
            content = await handler(await self._body(scope, receive))
            status = 200
        except GatewayError as exc:
            status, content = exc.status, _encode(exc.body())
            headers += [(k.encode(), v.encode()) for k, v in exc.headers().items()]
        except Exception:
            logger.exception("unexpected error on %s", scope["path"])
            status, content = 500, INTERNAL_ERROR

        headers.append((b"content-length", str(len(content)).encode()))
        await send(
            {"type": "http.response.start", "status": status, "headers": headers}
        )
        await send({"type": "http.response.body", "body": content})

    async def _body(self, scope, receive) -> bytes:
        content_type = length = b""
        content_types = 0
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
                content_types += 1
            elif name == b"content-length":
                length = value
            elif name == b"content-encoding" and value.lower() != b"identity":
                # bodies are never decompressed here; better refused than misread
                raise UnsupportedMediaType(
                    f"content-encoding {value.decode('latin-1')!r} is not "
                    "accepted; send the JSON body uncompressed",
                    field="content-encoding",
                )
        if content_types > 1:
            raise UnsupportedMediaType(
                "more than one content-type header; expected one, 'application/json'",
                field="content-type",
            )
        media_type = content_type.split(b";", 1)[0].strip().lower()
        if media_type != b"application/json":
            shown = repr(content_type.decode("latin-1")) if content_type else "missing"
            raise UnsupportedMediaType(
                f"content-type is {shown}; expected 'application/json'",
                field="content-type",
            )
        if length.isdigit() and int(length) > self.max_body:
            raise BodyTooLarge(self._too_large(int(length)))

        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge(self._too_large(size))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self, size: int) -> str:
        return f"the body is {size} bytes; at most {self.max_body} are allowed"


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(_encode(body), status, headers, media_type="application/json")


def probe_routes(gateway: Gateway) -> list[Route]:
    async def health(request: Request) -> Response:
        return json_response({"status": "healthy"})

    async def ready(request: Request) -> Response:
        error = await gateway.ready()
        if error is None:
            return json_response({"status": "ready"})
        return json_response(error.body(), error.status, error.headers())

    async def openapi(request: Request) -> Response:
        return json_response(openapi_document(gateway.settings))

    async def scoring_needs_post(request: Request) -> Response:
        raise HTTPException(405, headers={"allow": "POST"})

    return [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/predict", scoring_needs_post),
        Route("/predict/batch", scoring_needs_post),
    ]


async def on_http_error(request: Request, exc: HTTPException) -> Response:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return json_response(
        {"error": {"code": code, "message": message}}, exc.status_code, exc.headers
    )


async def on_unexpected_error(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s", request.url.path)
    return Response(INTERNAL_ERROR, 500, media_type="application/json")


def create_app(settings: Settings | None = None) -> ScoringApp:
    gateway = Gateway(settings or load_settings())
    fallback = Starlette(
        routes=probe_routes(gateway),
        exception_handlers={
            HTTPException: on_http_error,
            Exception: on_unexpected_error,
        },
        lifespan=gateway.lifespan,
    )
    fallback.state.gateway = gateway
    return ScoringApp(gateway, fallback)


app = create_app()
