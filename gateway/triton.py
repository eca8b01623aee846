"""The one hop this service exists for: rows to Triton as KServe v2, scores back."""

import asyncio
import logging
import time

import aiohttp
import numpy as np
import tritonclient.http.aio as triton_http
from tritonclient.utils import InferenceServerException

from gateway.config import Settings
from gateway.errors import UpstreamFailed, UpstreamTimeout, UpstreamUnavailable

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
        self.threshold: float | None = None
        self.threshold_version: str | None = None
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
        try:
            result = await asyncio.wait_for(
                self.client.infer(self.settings.model_name, [request], outputs=wanted),
                timeout=self.settings.triton_timeout_s,
            )
        except asyncio.TimeoutError as exc:
            raise UpstreamTimeout(
                f"the model did not answer within {self.settings.triton_timeout_s} s"
            ) from exc
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise UpstreamUnavailable("the model server is not reachable") from exc
        except InferenceServerException as exc:
            raise _classify(exc) from exc

        version = result.get_response()["model_version"]
        if version != self.threshold_version:
            await self.load_threshold(version)
        return result.as_numpy("probabilities")[:, 1], version

    async def load_threshold(self, version: str = "") -> float:
        """Read the decision threshold that training stored in the model config."""
        try:
            config = await self.client.get_model_config(self.settings.model_name)
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise UpstreamUnavailable("the model server is not reachable") from exc
        except InferenceServerException as exc:
            raise _classify(exc) from exc

        raw = config.get("parameters", {}).get(THRESHOLD_PARAMETER, {})
        try:
            threshold = float(raw["string_value"])
        except (KeyError, ValueError) as exc:
            raise UpstreamFailed(
                f"model config has no numeric parameter {THRESHOLD_PARAMETER!r}"
            ) from exc
        if threshold != self.threshold:
            logger.info("decision threshold %s (model version %s)", threshold, version)
        self.threshold, self.threshold_version = threshold, version
        return threshold

    async def is_ready(self) -> bool:
        """Whether the model is ready in Triton; reuses answers for a short while."""
        now = time.monotonic()
        if now - self._ready_at < self.settings.ready_cache_s:
            return self._ready
        try:
            ready = await self.client.is_model_ready(self.settings.model_name)
            if ready and self.threshold is None:
                await self.load_threshold()
        except (aiohttp.ClientError, OSError, InferenceServerException) as exc:
            logger.warning("readiness check failed: %s", exc)
            ready = False
        except UpstreamFailed as exc:
            logger.warning("readiness check failed: %s", exc.message)
            ready = False
        self._ready, self._ready_at = ready, now
        return ready


def _classify(exc: InferenceServerException):
    status = str(exc.status() or "")
    if status in {"400", "StatusCode.INVALID_ARGUMENT"}:
        return UpstreamFailed(f"the model rejected the request: {exc.message()}")
    if status in {"503", "404", "StatusCode.UNAVAILABLE"} or "unavailable" in str(exc):
        return UpstreamUnavailable("the model is not ready")
    return UpstreamFailed("the model server answered with an error")
