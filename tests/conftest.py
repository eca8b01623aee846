"""Shared fixtures: the real native stack on free ports, and held-out rows."""

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "model_repository" / "fraud_xgb"
HOLDOUT = ROOT / "data" / "holdout.npz"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@dataclass
class Stack:
    env: dict
    nginx: str
    triton_http: str
    triton_grpc: str
    run_dir: Path

    def command(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "deploy.stack", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=300,
        )


def ensure_model() -> None:
    """Train once when the repository has no model, as `make up` does."""
    if not (MODEL_DIR / "config.pbtxt").exists() or not HOLDOUT.exists():
        subprocess.run([sys.executable, "-m", "training.train"], cwd=ROOT, check=True)


def start_stack(run_dir: Path, **overrides: str) -> Stack:
    ensure_model()
    nginx, http, grpc, metrics, gateway = free_ports(5)
    env = {
        **os.environ,
        "FRAUD_RUN_DIR": str(run_dir),
        "FRAUD_NGINX_PORT": str(nginx),
        "FRAUD_TRITON_HTTP_PORT": str(http),
        "FRAUD_TRITON_GRPC_PORT": str(grpc),
        "FRAUD_TRITON_METRICS_PORT": str(metrics),
        "FRAUD_GATEWAY_PORT": str(gateway),
        **{f"FRAUD_{k.upper()}": v for k, v in overrides.items()},
    }
    stack = Stack(
        env,
        f"http://127.0.0.1:{nginx}",
        f"127.0.0.1:{http}",
        f"127.0.0.1:{grpc}",
        run_dir,
    )
    result = stack.command("up", check=False)
    if result.returncode != 0:
        logs = stack.command("logs", check=False).stdout
        stack.command("down", check=False)
        pytest.fail(f"stack did not start:\n{result.stdout}{result.stderr}\n{logs}")
    return stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    """One real native stack for the whole session, torn down after."""
    running = start_stack(tmp_path_factory.mktemp("stack"))
    yield running
    running.command("down", check=False)


@pytest.fixture(scope="session")
def stack_factory(tmp_path_factory):
    """Start extra stacks with other settings (e.g. a low rate limit)."""
    started = []

    def start(**overrides: str) -> Stack:
        started.append(start_stack(tmp_path_factory.mktemp("stack"), **overrides))
        return started[-1]

    yield start
    for running in started:
        running.command("down", check=False)


@pytest.fixture(scope="session")
def holdout() -> dict:
    ensure_model()
    data = np.load(HOLDOUT)
    return {key: data[key] for key in data.files}
