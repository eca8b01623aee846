"""Helpers for the load-testing tests: tools they need, and where those live."""

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PERF_ANALYZER = ROOT / ".venv-perf" / "bin" / "perf_analyzer"
LOCUST = ROOT / ".venv" / "bin" / "locust"


def require(present: bool, missing: str, install: str) -> None:
    """Skip when a tool is missing on a developer's machine; fail in CI.

    CI (CI=true) installs every tool these tests use, so there a missing one is
    a broken install step, not a reason to skip.
    """
    if present:
        return
    message = f"{missing}; install it with: {install}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def require_module(name: str) -> None:
    require(
        importlib.util.find_spec(name) is not None,
        f"Python package {name!r} is missing",
        "make loadtest-install",
    )


def require_locust() -> Path:
    require(
        LOCUST.exists(), "Locust is not installed in .venv", "make loadtest-install"
    )
    return LOCUST


def require_perf_analyzer() -> Path:
    require(PERF_ANALYZER.exists(), "perf_analyzer is missing", "make perf-install")
    return PERF_ANALYZER


def require_browser() -> tuple[str, str]:
    browser = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    require(
        Path(browser).exists() and Path(driver).exists(),
        "no headless browser: Debian's chromium and chromium-driver are missing",
        "apt-get install chromium chromium-driver",
    )
    return browser, driver
