"""The coalescer's flush rules and bounds, with a recording fake upstream."""

import asyncio

import numpy as np
import pytest

from gateway.batcher import Coalescer


class Upstream:
    """Scores a row as its first feature; fails the batches it is told to."""

    def __init__(self, fail_batches: tuple[int, ...] = ()):
        self.batches: list[int] = []
        self.fail_batches = fail_batches

    async def __call__(self, rows: np.ndarray):
        self.batches.append(len(rows))
        await asyncio.sleep(0)
        if len(self.batches) in self.fail_batches:
            raise RuntimeError(f"batch {len(self.batches)} failed")
        return rows[:, 0].astype(np.float64), "1"


def row(value: float, n: int = 1) -> np.ndarray:
    return np.full((n, 30), value, dtype=np.float32)


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_lone_row_goes_alone_at_once():
    upstream = Upstream()

    async def scenario():
        coalescer = Coalescer(upstream, max_rows=64)
        return await asyncio.wait_for(coalescer.score(row(0.3)), timeout=1)

    scores, version = run(scenario())

    assert upstream.batches == [1]
    assert scores.tolist() == pytest.approx([0.3])
    assert version == "1"


def test_rows_arriving_together_share_one_request_and_get_their_own_score():
    upstream = Upstream()

    async def scenario():
        coalescer = Coalescer(upstream, max_rows=64)
        return await asyncio.gather(*(coalescer.score(row(i)) for i in range(20)))

    results = run(scenario())

    assert upstream.batches == [20]
    assert [float(scores[0]) for scores, _ in results] == list(range(20))


def test_a_batch_never_exceeds_max_rows():
    upstream = Upstream()

    async def scenario():
        coalescer = Coalescer(upstream, max_rows=8)
        parts = [coalescer.score(row(i, n=3)) for i in range(7)]
        return await asyncio.gather(*parts)

    results = run(scenario())

    assert max(upstream.batches) <= 8
    assert sum(upstream.batches) == 21
    for i, (scores, _) in enumerate(results):
        assert scores.tolist() == [i] * 3


def test_a_full_batch_leaves_without_waiting_for_the_window():
    upstream = Upstream()

    async def scenario():
        coalescer = Coalescer(upstream, max_rows=4, window_us=10_000_000)
        parts = [coalescer.score(row(i)) for i in range(4)]
        await asyncio.wait_for(asyncio.gather(*parts), timeout=1)

    run(scenario())

    assert upstream.batches == [4]


def test_an_upstream_error_fails_exactly_its_batch_and_the_next_succeeds():
    upstream = Upstream(fail_batches=(1,))

    async def scenario():
        coalescer = Coalescer(upstream, max_rows=64)
        first = await asyncio.gather(
            *(coalescer.score(row(i)) for i in range(5)), return_exceptions=True
        )
        second = await asyncio.gather(*(coalescer.score(row(i)) for i in range(3)))
        return first, second

    first, second = run(scenario())

    assert upstream.batches == [5, 3]
    assert all(isinstance(r, RuntimeError) for r in first)
    assert [float(scores[0]) for scores, _ in second] == [0, 1, 2]


def test_a_window_gathers_rows_that_arrive_within_it():
    upstream = Upstream()

    async def scenario():
        coalescer = Coalescer(upstream, max_rows=64, window_us=20_000)
        early = asyncio.ensure_future(coalescer.score(row(1)))
        await asyncio.sleep(0.005)
        late = asyncio.ensure_future(coalescer.score(row(2)))
        await asyncio.gather(early, late)

    run(scenario())

    assert upstream.batches == [2]


def test_drain_sends_pending_rows_and_waits_for_them():
    upstream = Upstream()

    async def scenario():
        coalescer = Coalescer(upstream, max_rows=64, window_us=10_000_000)
        pending = asyncio.ensure_future(coalescer.score(row(4)))
        await asyncio.sleep(0)
        await coalescer.drain()
        return pending.result()

    scores, _ = run(scenario())

    assert scores.tolist() == [4]


def test_fail_pending_fails_waiting_rows_but_not_those_in_flight():
    gate = asyncio.Event()

    async def slow(rows):
        await gate.wait()
        return rows[:, 0].astype(np.float64), "1"

    async def scenario():
        coalescer = Coalescer(slow, max_rows=64, max_inflight=1)
        in_flight = asyncio.ensure_future(coalescer.score(row(1)))
        await asyncio.sleep(0.01)
        waiting = asyncio.ensure_future(coalescer.score(row(2)))
        await asyncio.sleep(0.01)
        coalescer.fail_pending(RuntimeError("circuit open"))
        gate.set()
        return await asyncio.gather(in_flight, waiting, return_exceptions=True)

    first, second = run(scenario())

    assert first[0].tolist() == [1]
    assert isinstance(second, RuntimeError)
