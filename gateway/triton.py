"""The one hop this service exists for: rows to Triton as KServe v2, scores back."""

import asyncio
import logging
import time

import aiohttp
import numpy as np
import tritonclient.http.aio as triton_http
from tritonclient.utils import InferenceServerException

from gateway.breaker import CircuitBreaker, CircuitOpen
from gateway.config import Settings
from gateway.errors import (
    GatewayError,
    Overloaded,
    UpstreamFailed,
    UpstreamTimeout,
    UpstreamUnavailable,
)

logger = logging.getLogger(__name__)

THRESHOLD_PARAMETER = "decision_threshold"


class TritonScorer:
    """Scores float32 rows with the model served by Triton.

    Create it inside the running event loop (the aio client binds to it) and
    ``await close()`` on shutdown.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.client = triton_http.InferenceServerClient(
            settings.triton_url, conn_limit=settings.triton_connections
        )
        self.breaker = CircuitBreaker(
            settings.breaker_failures, settings.breaker_reset_s
        )
        # decision threshold per model version, read from Triton's model config
        self.thresholds: dict[str, float] = {}
        self._hedge_after_s = settings.hedge_after_ms / 1e3
        self._hedging = False
        self._ready_at = 0.0
        self._ready = False

    async def close(self) -> None:
        await self.client.close()

    async def score(self, rows: np.ndarray) -> tuple[np.ndarray, str]:
        """P(fraud) per row, and the model version that produced them."""
        request = triton_http.InferInput("input", list(rows.shape), "FP32")
        request.set_data_from_numpy(rows, binary_data=self.settings.binary_tensors)
        wanted = [
            triton_http.InferRequestedOutput(
                "probabilities", binary_data=self.settings.binary_tensors
            )
        ]
        self.breaker.start_call()
        try:
            async with asyncio.timeout(self.settings.triton_timeout_s):
                result = await self._infer_hedged([request], wanted)
        except Exception as exc:
            error = _classify(exc)
            if error.breaks_circuit:
                self.breaker.record_failure()
            raise error from exc
        self.breaker.record_success()

        version = result.get_response()["model_version"]
        if version not in self.thresholds:
            await self.load_threshold(version)
        return result.as_numpy("probabilities")[:, 1], version

    async def _infer_hedged(self, inputs: list, outputs: list):
        """One infer call; if it is still out after ``hedge_after_ms``, a second.

        While Triton loads a new model version, a request that arrives at the
        switch can sit for a second or two while the ones after it pass; the
        copy answers in time. At most one copy is out per worker, so under
        overload hedging adds next to no work.
        """
        call = self.client.infer
        if self._hedge_after_s <= 0:
            return await call(self.settings.model_name, inputs, outputs=outputs)
        first = asyncio.ensure_future(
            call(self.settings.model_name, inputs, outputs=outputs)
        )
        done, _ = await asyncio.wait({first}, timeout=self._hedge_after_s)
        if done or self._hedging:
            return await first

        self._hedging = True
        second = asyncio.ensure_future(
            call(self.settings.model_name, inputs, outputs=outputs)
        )
        attempts = asyncio.as_completed((first, second))
        try:
            try:
                return await next(attempts)
            except Exception:  # the first to finish failed: wait for the other
                return await next(attempts)
        finally:
            self._hedging = False
            for task in (first, second):
                task.cancel()

    async def load_threshold(self, version: str = "") -> float:
        """Read the decision threshold that training stored in the model config."""
        try:
            async with asyncio.timeout(self.settings.triton_timeout_s):
                config = await self.client.get_model_config(self.settings.model_name)
        except Exception as exc:
            raise _classify(exc) from exc

        raw = config.get("parameters", {}).get(THRESHOLD_PARAMETER, {})
        try:
            threshold = float(raw["string_value"])
        except (KeyError, ValueError) as exc:
            raise UpstreamFailed(
                f"model config has no numeric parameter {THRESHOLD_PARAMETER!r}"
            ) from exc
        if version not in self.thresholds:
            logger.info("decision threshold %s (model version %s)", threshold, version)
        self.thresholds[version] = threshold
        return threshold

    async def is_ready(self) -> bool:
        """Whether the model is ready in Triton; reuses answers for a short while.

        While the circuit is open this answers False without asking Triton; once
        its reset time has passed, the readiness check is the probe that closes it.
        """
        now = time.monotonic()
        if now - self._ready_at < self.settings.ready_cache_s:
            return self._ready
        probing = False
        try:
            self.breaker.start_call()
            probing = self.breaker.state == "half-open"
            async with asyncio.timeout(self.settings.triton_timeout_s):
                ready = await self.client.is_model_ready(self.settings.model_name)
            if ready and not self.thresholds:
                await self.load_threshold()
        except CircuitOpen:
            ready = False
        except Exception as exc:
            logger.warning("readiness check failed: %s", _classify(exc).message)
            ready = False
        if probing:
            (self.breaker.record_success if ready else self.breaker.record_failure)()
        self._ready, self._ready_at = ready, now
        return ready


def _classify(exc: Exception) -> GatewayError:
    """The gateway error for an exception raised on the way to Triton."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout("the model did not answer in time")
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return UpstreamUnavailable("the model server is not reachable")
    if not isinstance(exc, InferenceServerException):
        return UpstreamFailed("the model server answered with an error")

    message = str(exc.message() or "")
    status = str(exc.status() or "")
    if "queue size" in message or "queue timeout" in message.lower():
        return Overloaded("the model server's queue is full")
    if status in {"503", "StatusCode.UNAVAILABLE"} or "not ready" in message:
        return UpstreamUnavailable("the model is not ready")
    if "unknown model" in message or "not found" in message:
        return UpstreamUnavailable("the model is not loaded")
    return UpstreamFailed("the model server answered with an error")
