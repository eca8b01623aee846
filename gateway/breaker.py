"""A circuit breaker for the Triton hop.

Closed: batches go to Triton; consecutive failures (unreachable, timed out) are
counted. After ``failure_threshold`` of them the circuit opens: callers get 503
at once, without touching Triton, for ``reset_s``. Then it lets one probe batch
through (half-open): success closes it, failure opens it again.
"""

import math
import time
from collections.abc import Callable

from gateway.errors import GatewayError


class CircuitOpen(GatewayError):
    status = 503
    code = "circuit_open"

    def __init__(self, retry_after: int):
        super().__init__(
            f"the model server failed repeatedly; not trying again for {retry_after} s"
        )
        self.retry_after = retry_after


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 5,
        reset_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        on_open: Callable[[CircuitOpen], None] | None = None,
    ):
        self.failure_threshold = failure_threshold
        # told when the circuit opens, to fail work already waiting at once
        self.on_open = on_open
        self.reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._probing else "open"

    def check(self) -> None:
        """Raise CircuitOpen unless a call may go ahead now."""
        if self._opened_at is None:
            return
        remaining = self._opened_at + self.reset_s - self._clock()
        if remaining > 0 or self._probing:
            raise CircuitOpen(max(1, math.ceil(remaining)))

    def start_call(self) -> None:
        """Like check(), and marks the call as the probe when the circuit is open."""
        self.check()
        if self._opened_at is not None:
            self._probing = True

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
            self._probing = False
            if self.on_open is not None:
                self.on_open(CircuitOpen(max(1, math.ceil(self.reset_s))))
