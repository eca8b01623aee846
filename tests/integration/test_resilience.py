"""Faults injected into a real stack: Triton killed or stalled, load spikes, model
swaps, a crashed gateway, shutdown with requests in flight.

Each test prints what it measured (recovery times, latencies); run with ``-s`` to
see them.
"""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from loadtest.h2load import finish, p99, start
from tests.conftest import MODEL_DIR, ROOT
from training.repository import pin_version

pytestmark = pytest.mark.stack

TIMEOUT_S = 2.0  # the gateway's FRAUD_TRITON_TIMEOUT_S default


@pytest.fixture(scope="module")
def repository(tmp_path_factory, holdout) -> Path:
    """A model repository of its own, so versions can change without side effects."""
    newest = max(
        (p for p in MODEL_DIR.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
    )
    repo = tmp_path_factory.mktemp("repository")
    model = repo / "fraud_xgb"
    shutil.copytree(newest, model / "1")
    shutil.copy(MODEL_DIR / "config.pbtxt", model / "config.pbtxt")
    metadata = model / "1" / "metadata.json"
    if not metadata.exists():  # a model trained before versions kept metadata
        config = (model / "config.pbtxt").read_text()
        threshold = config.split('"decision_threshold" value: { string_value: "')[1]
        metadata.write_text(json.dumps({"threshold": float(threshold.split('"')[0])}))
    pin_version(model, 1)
    return repo


@pytest.fixture(scope="module")
def faulty(stack_factory, repository):
    return stack_factory(model_repository=str(repository))


@pytest.fixture
def row(holdout) -> list[float]:
    return holdout["features"][0].tolist()


def supervised_pid(stack, program: str) -> int:
    supervisorctl = Path(sys.executable).parent / "supervisorctl"
    config = stack.run_dir / "supervisord.conf"
    output = subprocess.run(
        [str(supervisorctl), "-c", str(config), "pid", program],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(output)


def wait_until(predicate, timeout_s: float = 60) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return time.time()
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    pytest.fail(f"condition not met within {timeout_s} s")


def triton_ready(stack) -> bool:
    url = f"http://{stack.triton_http}/v2/models/fraud_xgb/ready"
    return httpx.get(url, timeout=1).status_code == 200


def predict(stack, row, **headers) -> httpx.Response:
    return httpx.post(
        f"{stack.nginx}/predict", json={"features": row}, headers=headers, timeout=5
    )


def statuses(answers) -> dict[int, int]:
    counts: dict[int, int] = {}
    for answer in answers:
        counts[answer.status] = counts.get(answer.status, 0) + 1
    return counts


def test_triton_killed_under_load_gives_fast_503s_then_recovers(faulty, row, tmp_path):
    wait_until(lambda: predict(faulty, row).status_code == 200)
    load = start(f"{faulty.nginx}/predict", row, tmp_path, rate=100, seconds=20)
    time.sleep(3)

    killed_at = time.time()
    os.kill(supervised_pid(faulty, "triton"), signal.SIGKILL)
    time.sleep(1)
    ready_at = wait_until(lambda: triton_ready(faulty))
    answers = finish(load)

    failures = [a for a in answers if a.status != 200]
    assert set(statuses(answers)) <= {200, 503}, statuses(answers)
    assert failures, "killing Triton should have been noticed"
    assert max(a.latency_ms for a in failures) < TIMEOUT_S * 1e3
    last_failure = max(a.start_s for a in failures)
    recovered_after = max(0.0, last_failure - ready_at)
    assert recovered_after <= 10, f"still failing {recovered_after:.1f} s after ready"
    assert all(a.status == 200 for a in answers if a.start_s > last_failure)
    print(
        f"\nTriton SIGKILL: {statuses(answers)}; Triton ready again after "
        f"{ready_at - killed_at:.1f} s; all requests succeed {recovered_after:.2f} s "
        f"after that; slowest 503 {max(a.latency_ms for a in failures):.1f} ms, "
        f"p99 of 503s {p99(failures):.1f} ms"
    )


def test_triton_stalled_gives_504_then_open_circuit_503_then_recovers(
    faulty, row, tmp_path
):
    wait_until(lambda: predict(faulty, row).status_code == 200)
    load = start(f"{faulty.nginx}/predict", row, tmp_path, rate=100, seconds=16)
    time.sleep(2)

    triton = supervised_pid(faulty, "triton")
    stopped_at = time.time()
    os.kill(triton, signal.SIGSTOP)
    try:
        time.sleep(5)
        ready_while_stalled = httpx.get(f"{faulty.nginx}/ready", timeout=5)
    finally:
        os.kill(triton, signal.SIGCONT)
    continued_at = time.time()
    answers = finish(load)

    stalled = [a for a in answers if stopped_at <= a.start_s < continued_at]
    timed_out = [a for a in stalled if a.status == 504]
    rejected = [a for a in stalled if a.status == 503]
    assert {a.status for a in stalled} <= {200, 503, 504}
    assert timed_out and rejected
    assert max(a.latency_ms for a in timed_out) < TIMEOUT_S * 1e3 + 500
    assert min(a.start_s for a in rejected) > min(a.start_s for a in timed_out)
    assert ready_while_stalled.status_code == 503
    after = [a for a in answers if a.start_s > continued_at + 5]
    assert after and all(a.status == 200 for a in after)
    first_ok = min(
        a.start_s for a in answers if a.start_s > continued_at and a.status == 200
    )
    print(
        f"\nTriton SIGSTOP 5 s: {len(timed_out)} x 504 (slowest "
        f"{max(a.latency_ms for a in timed_out):.0f} ms), then {len(rejected)} x 503 "
        f"from the open circuit (p99 {p99(rejected):.1f} ms); first 200 "
        f"{first_ok - continued_at:.2f} s after SIGCONT"
    )


def test_spike_of_twenty_times_gets_only_200_429_503_and_settles(faulty, row, tmp_path):
    quiet_rate, seconds = 100, 26
    quiet = start(
        f"{faulty.nginx}/predict", row, tmp_path, rate=quiet_rate, seconds=seconds
    )
    time.sleep(6)
    spike_started = time.time()
    spike_dir = tmp_path / "spike"
    spike_dir.mkdir()
    spike = start(
        f"{faulty.nginx}/predict",
        row,
        spike_dir,
        rate=19 * quiet_rate,
        seconds=10,
        clients=40,
    )
    spike_answers = finish(spike)
    spike_ended = time.time()
    answers = finish(quiet) + spike_answers

    assert set(statuses(answers)) <= {200, 429, 503}, statuses(answers)
    assert max(a.latency_ms for a in answers) < TIMEOUT_S * 1e3 + 500
    before = [a for a in answers if a.start_s < spike_started]
    settled = [a for a in answers if a.start_s > spike_ended + 5]
    assert settled and all(a.status == 200 for a in settled)
    assert p99(settled) <= 3 * p99(before) + 5
    during = [a for a in answers if spike_started <= a.start_s <= spike_ended]
    print(
        f"\nspike {quiet_rate} -> {20 * quiet_rate} req/s for 10 s: "
        f"{statuses(during)} during; p99 before {p99(before):.2f} ms, during "
        f"{p99(during):.2f} ms, from 5 s after {p99(settled):.2f} ms"
    )


def run_models(stack, repository: Path, *args: str) -> str:
    env = {**stack.env, "FRAUD_MODEL_REPOSITORY": str(repository)}
    return subprocess.run(
        [sys.executable, "-m", "deploy.models", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=180,
    ).stdout


def served_version(stack, row) -> str:
    return predict(stack, row).json()["model_version"]


def test_model_swap_and_rollback_under_load_lose_no_request(
    faulty, repository, row, tmp_path
):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "training.train",
            "--repository",
            str(repository),
            "--holdout",
            str(tmp_path / "holdout.npz"),
            "--rows",
            "40000",
            "--seed",
            "11",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    before = served_version(faulty, row)
    load = start(f"{faulty.nginx}/predict", row, tmp_path, rate=100, seconds=14)
    time.sleep(2)

    started = time.monotonic()
    run_models(faulty, repository, "load")
    swapped_in = time.monotonic() - started
    after_load = served_version(faulty, row)
    run_models(faulty, repository, "rollback")
    after_rollback = served_version(faulty, row)
    answers = finish(load)

    assert (before, after_load, after_rollback) == ("1", "2", "1")
    assert statuses(answers) == {200: len(answers)}
    print(
        f"\nmodel swap 1 -> 2 -> 1 under 100 req/s: {len(answers)} requests, "
        f"0 failed; load of version 2 took {swapped_in:.1f} s"
    )


def test_crashed_gateway_is_restarted_and_nginx_answers_503_meanwhile(
    faulty, row, tmp_path
):
    wait_until(lambda: predict(faulty, row).status_code == 200)
    load = start(f"{faulty.nginx}/predict", row, tmp_path, rate=100, seconds=12)
    time.sleep(2)

    old = supervised_pid(faulty, "gateway")
    killed_at = time.time()
    os.kill(old, signal.SIGKILL)
    back_at = wait_until(lambda: predict(faulty, row).status_code == 200)
    answers = finish(load)

    assert supervised_pid(faulty, "gateway") != old
    assert set(statuses(answers)) <= {200, 503}, statuses(answers)
    assert all(a.status == 200 for a in answers if a.start_s > back_at + 1)
    print(
        f"\ngateway SIGKILL: {statuses(answers)}; serving again after "
        f"{back_at - killed_at:.1f} s"
    )


def test_api_key_when_set_is_required_for_scoring_and_kserve(stack_factory, row):
    guarded = stack_factory(api_key="s3cret-key")

    without = predict(guarded, row)
    wrong = predict(guarded, row, **{"X-API-Key": "nope"})
    right = predict(guarded, row, **{"X-API-Key": "s3cret-key"})
    kserve = httpx.get(f"{guarded.nginx}/v2/models/fraud_xgb")
    kserve_ok = httpx.get(
        f"{guarded.nginx}/v2/models/fraud_xgb", headers={"X-API-Key": "s3cret-key"}
    )

    assert without.status_code == wrong.status_code == kserve.status_code == 401
    assert without.json()["error"]["code"] == "unauthorized"
    assert right.status_code == kserve_ok.status_code == 200
    assert httpx.get(f"{guarded.nginx}/health").status_code == 200


def test_shutdown_lets_requests_in_flight_finish(stack_factory, holdout):
    draining = stack_factory()
    # 40 requests of 12 rows stay under the gateway's 512-row shedding bound
    rows = holdout["features"][:12].tolist()

    async def in_flight_then_down():
        async with httpx.AsyncClient(base_url=draining.nginx, timeout=30) as client:
            await client.post("/predict/batch", json={"instances": rows})
            requests = [
                asyncio.ensure_future(
                    client.post("/predict/batch", json={"instances": rows})
                )
                for _ in range(40)
            ]
            await asyncio.sleep(0.05)
            down = asyncio.ensure_future(asyncio.to_thread(draining.command, "down"))
            answers = await asyncio.gather(*requests, return_exceptions=True)
            await down
            return answers

    answers = asyncio.run(in_flight_then_down())

    errors = [a for a in answers if isinstance(a, Exception)]
    assert not errors, errors[:3]
    assert {a.status_code for a in answers} == {200}
