"""Request coalescing: concurrent rows in one worker go to Triton as one request.

A row that arrives alone leaves at the next turn of the event loop, so it waits
for nothing; rows that arrive together (the loop delivers them in the same turn)
share one KServe v2 request of up to ``max_rows`` rows. Rows are validated before
they get here, so a bad row never joins a batch, and an upstream error fails
exactly the rows of the batch it hit.
"""

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np

ScoreBatch = Callable[[np.ndarray], Awaitable[tuple[np.ndarray, str]]]


class Coalescer:
    def __init__(self, score_batch: ScoreBatch, max_rows: int, window_us: int = 0):
        self._score_batch = score_batch
        self._max_rows = max_rows
        self._window_s = window_us / 1e6
        self._rows: list[np.ndarray] = []
        self._waiters: list[asyncio.Future] = []
        self._pending_rows = 0
        self._flush_handle: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task] = set()

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
        elif self._flush_handle is None:
            if self._window_s > 0:
                self._flush_handle = loop.call_later(self._window_s, self._flush)
            else:
                self._flush_handle = loop.call_soon(self._flush)
        return await waiter

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._rows:
            return
        rows, waiters = self._rows, self._waiters
        self._rows, self._waiters, self._pending_rows = [], [], 0
        task = asyncio.ensure_future(self._run(rows, waiters))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, rows: list[np.ndarray], waiters: list[asyncio.Future]):
        batch = rows[0] if len(rows) == 1 else np.concatenate(rows)
        try:
            scores, version = await self._score_batch(batch)
        except Exception as exc:  # every member of the batch gets the same error
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return

        start = 0
        for part, waiter in zip(rows, waiters, strict=True):
            stop = start + len(part)
            if not waiter.done():
                waiter.set_result((scores[start:stop], version))
            start = stop

    async def drain(self) -> None:
        """Send what is pending and wait for every batch in flight."""
        self._flush()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
