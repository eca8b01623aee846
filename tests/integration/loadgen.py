"""Open-loop load for the fault tests: h2load posting one row at a fixed rate.

h2load (Debian's nghttp2-client) sends on a timer per client, so a stalled
server does not slow the load down, and it logs every request: start time,
status and latency.
"""

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Answer:
    start_s: float  # seconds since the epoch
    status: int
    latency_ms: float


def h2load_path() -> str:
    found = shutil.which("h2load")
    if found is None:
        pytest.fail("h2load is missing: install the Debian package nghttp2-client")
    return found


def start_load(
    url: str,
    row: list[float],
    folder: Path,
    *,
    rate: int,
    seconds: int,
    clients: int = 10,
    headers: dict | None = None,
) -> tuple[subprocess.Popen, Path]:
    """Start ``rate`` req/s for ``seconds`` in the background."""
    body = folder / "body.json"
    body.write_text(json.dumps({"features": row}))
    log = folder / f"h2load-{rate}-{seconds}-{id(body)}.tsv"
    command = [
        h2load_path(),
        "--h1",
        "-t1",
        f"-c{clients}",
        f"--rps={rate / clients:g}",
        f"-D{seconds}",
        "-d",
        str(body),
        f"--log-file={log}",
        "-H",
        "Content-Type: application/json",
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    process = subprocess.Popen(
        [*command, url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return process, log


def finish_load(process: subprocess.Popen, log: Path) -> list[Answer]:
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 0, output
    answers = []
    for line in log.read_text().splitlines():
        start_us, status, latency_us = line.split("\t")[:3]
        answers.append(Answer(int(start_us) / 1e6, int(status), int(latency_us) / 1e3))
    assert answers, f"h2load logged no request:\n{output}"
    return sorted(answers, key=lambda a: a.start_s)


def p99(answers: list[Answer]) -> float:
    latencies = sorted(a.latency_ms for a in answers)
    return latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
