"""Locust against a real stack: headless scenarios and the web UI in a browser."""

import csv
import json
import os
import signal
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import free_ports
from tests.loadtest.conftest import (
    ROOT,
    require_browser,
    require_locust,
    require_module,
)

pytestmark = pytest.mark.stack

ALL_USERS = ["PredictUser", "BatchUser", "KServeUser"]
# a spike small enough for a test: 8 req/s (2 users at the default 4 req/s
# each), 5 × that for 3 s, 3 s either side
TINY_SPIKE = {
    "FRAUD_SCENARIO": "spike",
    "FRAUD_SPIKE_BASE_RPS": "8",
    "FRAUD_SPIKE_FACTOR": "5",
    "FRAUD_SPIKE_BEFORE_S": "3",
    "FRAUD_SPIKE_HOLD_S": "3",
    "FRAUD_SPIKE_AFTER_S": "3",
}


def locust_command(stack, *extra: str) -> list[str]:
    """What the Makefile runs: two worker processes, nginx and Triton targets."""
    return [
        str(require_locust()),
        "-f",
        "loadtest/locustfile.py",
        "--host",
        stack.nginx,
        "--triton-url",
        f"http://{stack.triton_http}",
        "--processes",
        "2",
        *extra,
    ]


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_tiny_spike_scores_every_endpoint_and_reports_its_cpu(stack, tmp_path):
    prefix = tmp_path / "spike"

    run = subprocess.run(
        locust_command(stack, "--headless", "--csv", str(prefix), *ALL_USERS),
        cwd=ROOT,
        env={**os.environ, **TINY_SPIKE},
        capture_output=True,
        text=True,
        timeout=120,
    )

    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "Traceback" not in output
    stats = {row["Name"]: row for row in read_rows(Path(f"{prefix}_stats.csv"))}
    for name in (
        "POST /predict",
        "POST /predict/batch (16 rows)",
        "POST triton /v2/.../infer",
    ):
        assert int(stats[name]["Request Count"]) > 0, name
    assert stats["Aggregated"]["Failure Count"] == "0"
    timeline = read_rows(Path(f"{prefix}_timeline.csv"))
    users = {int(row["users"]) for row in timeline}
    assert users <= {0, 2, 10} and 10 in users
    summary = json.loads(Path(f"{prefix}_summary.json").read_text())
    assert summary["scenario"] == "spike" and summary["workers"] == 2
    assert summary["locust_cpu_peak_cores"] > 0
    assert "locust CPU: mean" in output


def test_wrong_scenario_name_is_refused_with_the_choices(stack):
    run = subprocess.run(
        locust_command(stack, "--headless", "-t", "1s"),
        cwd=ROOT,
        env={**os.environ, "FRAUD_SCENARIO": "soak"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode != 0
    assert "'load', 'spike', 'stress'" in run.stderr


@contextmanager
def locust_web_ui(stack, port: int, log: Path):
    """`make locust` on a free port; stopped (master and workers) on exit."""
    with log.open("w") as output:
        process = subprocess.Popen(
            locust_command(
                stack,
                "--class-picker",
                "--web-host",
                "127.0.0.1",
                "--web-port",
                str(port),
            ),
            cwd=ROOT,
            env={**os.environ, "FRAUD_SCENARIO": "all"},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(f"http://127.0.0.1:{port}/", process, log)
        yield f"http://127.0.0.1:{port}/"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_for(url: str, process: subprocess.Popen, log: Path, seconds=30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"locust exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"the Locust web UI did not answer on {url} within {seconds} s")


@pytest.fixture
def browser(tmp_path):
    binary, driver_path = require_browser()
    require_module("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    # the Debian driver, named explicitly: Selenium Manager would try to download
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def aggregated_requests(driver) -> int:
    from selenium.webdriver.common.by import By

    for row in driver.find_elements(By.CSS_SELECTOR, "table tr"):
        cells = row.text.split()
        if cells and cells[0] == "Aggregated":
            return int(cells[1])
    return 0


def test_web_ui_starts_a_swarm_from_its_form_and_counts_requests(
    stack, browser, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    (port,) = free_ports(1)
    with locust_web_ui(stack, port, tmp_path / "locust.log") as url:
        browser.get(url)
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: d.find_elements(By.NAME, "userCount"))
        assert "LoadShape" in browser.find_element(By.NAME, "shapeClass").text
        for field, value in (("userCount", "4"), ("spawnRate", "4")):
            box = browser.find_element(By.NAME, field)
            box.send_keys(Keys.CONTROL, "a")
            box.send_keys(value)
        assert browser.find_element(By.NAME, "host").get_attribute("value") == (
            stack.nginx
        )
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

        wait.until(lambda d: aggregated_requests(d) >= 20)
        browser.save_screenshot(str(tmp_path / "locust-ui.png"))
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "RUNNING" in body
        assert "POST /predict" in body
