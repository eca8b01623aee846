"""The circuit breaker's states, driven by a fake clock."""

import pytest

from gateway.breaker import CircuitBreaker, CircuitOpen


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def breaker(clock):
    return CircuitBreaker(failure_threshold=3, reset_s=2.0, clock=clock)


def fail(breaker, times: int) -> None:
    for _ in range(times):
        breaker.start_call()
        breaker.record_failure()


def test_stays_closed_below_the_threshold(breaker):
    fail(breaker, 2)

    breaker.check()
    assert breaker.state == "closed"


def test_a_success_resets_the_count(breaker):
    fail(breaker, 2)
    breaker.record_success()
    fail(breaker, 2)

    assert breaker.state == "closed"


def test_opens_after_consecutive_failures_and_rejects_at_once(breaker):
    fail(breaker, 3)

    assert breaker.state == "open"
    with pytest.raises(CircuitOpen) as raised:
        breaker.check()
    assert raised.value.status == 503
    assert raised.value.headers() == {"retry-after": "2"}


def test_lets_one_probe_through_after_the_reset_time(breaker, clock):
    fail(breaker, 3)
    clock.now += 2.0

    breaker.start_call()

    assert breaker.state == "half-open"
    with pytest.raises(CircuitOpen):
        breaker.start_call()


def test_a_good_probe_closes_the_circuit(breaker, clock):
    fail(breaker, 3)
    clock.now += 2.5
    breaker.start_call()

    breaker.record_success()

    assert breaker.state == "closed"
    breaker.check()


def test_a_failed_probe_opens_it_again_for_the_full_time(breaker, clock):
    fail(breaker, 3)
    clock.now += 2.5
    breaker.start_call()

    breaker.record_failure()

    assert breaker.state == "open"
    clock.now += 1.9
    with pytest.raises(CircuitOpen):
        breaker.check()
    clock.now += 0.2
    breaker.check()


def test_opening_tells_the_listener_once(clock):
    told = []
    breaker = CircuitBreaker(
        failure_threshold=2, reset_s=2.0, clock=clock, on_open=told.append
    )

    fail(breaker, 2)

    assert len(told) == 1 and isinstance(told[0], CircuitOpen)
