"""The Triton hop's hedging and error mapping, with a fake client."""

import asyncio

import aiohttp
import pytest
from tritonclient.utils import InferenceServerException

from gateway.config import Settings
from gateway.errors import (
    Overloaded,
    UpstreamFailed,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.triton import TritonScorer, _classify


class StallFirst:
    """The first call never answers; later calls answer at once."""

    def __init__(self):
        self.calls = 0

    async def infer(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(3600)
        return f"answer {self.calls}"


def scorer_with(client, hedge_after_ms: float = 10) -> TritonScorer:
    async def make():
        scorer = TritonScorer(Settings(hedge_after_ms=hedge_after_ms))
        await scorer.client.close()  # replaced by the fake below
        return scorer

    scorer = asyncio.run(make())
    scorer.client = client
    return scorer


def test_a_stalled_call_is_answered_by_its_copy():
    client = StallFirst()
    scorer = scorer_with(client)

    result = asyncio.run(scorer._infer_hedged([], []))

    assert result == "answer 2"
    assert client.calls == 2


class StallThenFailFast:
    """The first call stalls, the copy fails at once, then the first answers."""

    def __init__(self):
        self.calls = 0

    async def infer(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 2:
            raise ConnectionResetError("copy lost")
        await asyncio.sleep(0.05)
        return "first answer"


def test_a_failed_copy_still_waits_for_the_first_call():
    scorer = scorer_with(StallThenFailFast())

    assert asyncio.run(scorer._infer_hedged([], [])) == "first answer"


def test_only_one_copy_is_out_at_a_time():
    client = StallFirst()
    scorer = scorer_with(client)
    scorer._hedging = True  # another batch's copy is already out

    async def bounded():
        return await asyncio.wait_for(scorer._infer_hedged([], []), timeout=0.2)

    with pytest.raises(TimeoutError):
        asyncio.run(bounded())
    assert client.calls == 1


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (TimeoutError(), UpstreamTimeout),
        (aiohttp.ClientConnectionError(), UpstreamUnavailable),
        (ConnectionRefusedError(), UpstreamUnavailable),
        (InferenceServerException("Exceeds maximum queue size", "400"), Overloaded),
        (InferenceServerException("model is not ready", "400"), UpstreamUnavailable),
        (
            InferenceServerException("Request for unknown model", "400"),
            UpstreamUnavailable,
        ),
        (InferenceServerException("bad input shape", "400"), UpstreamFailed),
        (ValueError("anything else"), UpstreamFailed),
    ],
)
def test_errors_map_to_statuses(raised, expected):
    assert type(_classify(raised)) is expected


def test_only_unreachable_and_timeouts_count_towards_the_circuit():
    assert UpstreamTimeout("t").breaks_circuit
    assert UpstreamUnavailable("u").breaks_circuit
    assert not Overloaded("o").breaks_circuit
    assert not UpstreamFailed("f").breaks_circuit
