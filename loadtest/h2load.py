"""Open-loop load with h2load (Debian's nghttp2-client): one row at a fixed rate.

Each client sends on its own timer whether or not the server keeps up, so a slow
or stalled server shows as latency instead of slowing the load down (no
coordinated omission), and h2load logs every request: start, status, latency.
Used by `make compare`'s constant-rate run and by the fault-injection tests.
"""

import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Answer:
    start_s: float  # seconds since the epoch
    status: int
    latency_ms: float


@dataclass
class Run:
    process: subprocess.Popen
    log: Path
    cpu_s: float = 0.0  # h2load's own CPU, known once finished


def start(
    url: str,
    row: list[float],
    folder: Path,
    *,
    rate: float,
    seconds: float,
    clients: int = 10,
    headers: dict | None = None,
) -> Run:
    """Post ``{"features": row}`` at ``rate`` req/s for ``seconds``, in background."""
    binary = shutil.which("h2load")
    if binary is None:
        raise FileNotFoundError("h2load is missing: install Debian's nghttp2-client")
    name = uuid.uuid4().hex[:8]
    body = folder / f"h2load-{name}.json"
    body.write_text(json.dumps({"features": row}))
    log = folder / f"h2load-{name}.tsv"
    per_client = rate / clients
    command = [
        binary,
        "--h1",
        "-t1",
        f"-c{clients}",
        f"--rps={per_client:g}",
        # clients start 1 ms apart, so their timers do not all fire at once
        "-r1",
        "--rate-period=1ms",
        f"-n{round(per_client * seconds) * clients}",
        "-d",
        str(body),
        f"--log-file={log}",
        "-H",
        "Content-Type: application/json",
    ]
    for key, value in (headers or {}).items():
        command += ["-H", f"{key}: {value}"]
    process = subprocess.Popen(
        [*command, url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return Run(process, log)


def finish(run: Run) -> list[Answer]:
    """Wait for the run; its answers, oldest first (``run.cpu_s`` is set)."""
    with run.process.stdout:
        output = run.process.stdout.read()
    _, status, usage = os.wait4(run.process.pid, 0)
    run.process.returncode = os.waitstatus_to_exitcode(status)
    run.cpu_s = usage.ru_utime + usage.ru_stime
    if run.process.returncode != 0:
        raise RuntimeError(f"h2load failed ({run.process.returncode}):\n{output}")
    answers = []
    for line in run.log.read_text().splitlines():
        start_us, code, latency_us = line.split("\t")[:3]
        answers.append(Answer(int(start_us) / 1e6, int(code), int(latency_us) / 1e3))
    if not answers:
        raise RuntimeError(f"h2load logged no request:\n{output}")
    return sorted(answers, key=lambda a: a.start_s)


def p99(answers: list[Answer]) -> float:
    latencies = sorted(a.latency_ms for a in answers)
    return latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
