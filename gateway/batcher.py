"""Request coalescing: concurrent rows in one worker go to Triton as one request.

A row that arrives when nothing is in flight leaves at the next turn of the event
loop, so it waits for nothing; rows that arrive together (the loop delivers them in
the same turn) share one KServe v2 request of up to ``max_rows`` rows. While
``max_inflight`` batches are already with Triton, new rows gather until one comes
back: under load, requests grow instead of multiplying, and each costs the hop
once. Rows are validated before they get here, so a bad row never joins a batch,
and an upstream error fails exactly the rows of the batch it hit.
"""

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np

ScoreBatch = Callable[[np.ndarray], Awaitable[tuple[np.ndarray, str]]]


class Coalescer:
    def __init__(
        self,
        score_batch: ScoreBatch,
        max_rows: int,
        window_us: int = 0,
        max_inflight: int = 0,
    ):
        self._score_batch = score_batch
        self._max_rows = max_rows
        self._window_s = window_us / 1e6
        self._max_inflight = max_inflight or 1_000_000
        self._rows: list[np.ndarray] = []
        self._waiters: list[asyncio.Future] = []
        self._pending_rows = 0
        self._flush_handle: asyncio.Handle | None = None
        self._inflight: set[asyncio.Task] = set()
        self._inflight_rows = 0

    @property
    def queued_rows(self) -> int:
        """Rows this worker holds: waiting for a batch or with Triton."""
        return self._pending_rows + self._inflight_rows

    async def score(self, rows: np.ndarray) -> tuple[np.ndarray, str]:
        """Scores for ``rows`` ([n, features], n ≤ max_rows), and the model version."""
        if self._pending_rows + len(rows) > self._max_rows:
            self._flush()
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._rows.append(rows)
        self._waiters.append(waiter)
        self._pending_rows += len(rows)

        if self._pending_rows >= self._max_rows:
            self._flush()
        elif self._flush_handle is None and self._can_send():
            self._schedule(loop)
        return await waiter

    def _can_send(self) -> bool:
        return len(self._inflight) < self._max_inflight

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._window_s > 0:
            self._flush_handle = loop.call_later(self._window_s, self._flush)
        else:
            self._flush_handle = loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._rows:
            return
        rows, waiters = self._rows, self._waiters
        self._inflight_rows += self._pending_rows
        self._rows, self._waiters, self._pending_rows = [], [], 0
        task = asyncio.ensure_future(self._run(rows, waiters))
        self._inflight.add(task)
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task) -> None:
        self._inflight.discard(task)
        # rows that gathered while Triton was busy leave now, as one batch
        if self._rows and self._flush_handle is None and self._can_send():
            self._schedule(asyncio.get_running_loop())

    async def _run(self, rows: list[np.ndarray], waiters: list[asyncio.Future]):
        batch = rows[0] if len(rows) == 1 else np.concatenate(rows)
        try:
            scores, version = await self._score_batch(batch)
        except Exception as exc:  # every member of the batch gets the same error
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        finally:
            self._inflight_rows -= len(batch)

        start = 0
        for part, waiter in zip(rows, waiters, strict=True):
            stop = start + len(part)
            if not waiter.done():
                waiter.set_result((scores[start:stop], version))
            start = stop

    def fail_pending(self, error: Exception) -> None:
        """Fail the rows still waiting for a batch (not those with Triton)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        waiters = self._waiters
        self._rows, self._waiters, self._pending_rows = [], [], 0
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)

    async def drain(self) -> None:
        """Send what is pending and wait for every batch in flight."""
        while self._rows or self._inflight:
            self._flush()
            await asyncio.gather(*self._inflight, return_exceptions=True)
