"""Locust users and load shapes for the fraud-scoring service.

    make locust                             # web UI on :8089 aimed at nginx
    make loadtest SCENARIO=load             # headless: load | stress | spike
    FRAUD_SCENARIO=spike .venv/bin/locust -f loadtest/locustfile.py --headless \\
        --host http://127.0.0.1:8080 --processes 2 PredictUser

Users: ``PredictUser`` (POST /predict through nginx), ``BatchUser`` (POST
/predict/batch through nginx) and ``KServeUser`` (KServe v2 straight to Triton's
HTTP port, ``--triton-url``). Each sends held-out rows, a mix of fraud and normal,
and checks every answer: status, fields, a score in [0, 1] and equal to the score
training recorded for that row (a coalescing bug that hands one caller another
caller's score fails here, not silently).

Every user paces itself at ``FRAUD_USER_RPS`` requests per second
(``constant_throughput``), so the shapes set a request rate by setting a user
count: the load stays open-loop while responses are faster than the pacing
interval, and turns closed-loop (the rate sags) once they are not.

Shapes, chosen with ``FRAUD_SCENARIO`` (or in the web UI with ``--class-picker``
when it is ``all``): ``load`` (200 req/s for 30 s), ``stress`` (a ramp that stops
when failures or p99 cross a limit), ``spike`` (20 times the base rate for 10 s).
Rates and durations are ``FRAUD_*`` variables listed in ``Scenario`` below.

The master samples the CPU of every Locust process once a second and prints it
at the end, with a per-second timeline in ``<csv prefix>_timeline.csv``.
"""

import csv
import gc
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass

import gevent
import locust
import locust.runners
import psutil
from locust import FastHttpUser, LoadTestShape, constant_throughput, events, task
from locust.runners import MasterRunner, WorkerRunner

try:
    from loadtest.checks import check_batch, check_kserve, check_prediction
    from loadtest.payloads import held_out_mix
except ImportError:  # run as a plain file beside its modules (the Locust image)
    from checks import check_batch, check_kserve, check_prediction
    from payloads import held_out_mix

logger = logging.getLogger(__name__)

# workers report to the master every 3 s by default; once a second keeps the
# master's timeline and the stress shape's stop rule in step with the load
locust.runners.WORKER_REPORT_INTERVAL = 1.0


# the FRAUD_* settings this file reads, so a run's summary can name its overrides
SETTINGS_READ: list[str] = ["FRAUD_SCENARIO"]


def _env(name: str, default: float) -> float:
    SETTINGS_READ.append(name)
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a number") from None


@dataclass(frozen=True)
class Scenario:
    # requests per second each user aims for; 200 req/s = 50 users at 4 req/s
    user_rps: float = _env("FRAUD_USER_RPS", 4)
    load_rps: float = _env("FRAUD_LOAD_RPS", 200)
    load_s: float = _env("FRAUD_LOAD_S", 30)
    # stress: start, step every step_s, stop at a limit or after max_s
    stress_start_rps: float = _env("FRAUD_STRESS_START_RPS", 200)
    stress_step_rps: float = _env("FRAUD_STRESS_STEP_RPS", 200)
    stress_step_s: float = _env("FRAUD_STRESS_STEP_S", 10)
    stress_max_s: float = _env("FRAUD_STRESS_MAX_S", 180)
    # the seed's service level: p99 under 500 ms, and 1 % failures as the break
    stress_p99_ms: float = _env("FRAUD_STRESS_P99_MS", 500)
    stress_fail_ratio: float = _env("FRAUD_STRESS_FAIL_RATIO", 0.01)
    spike_base_rps: float = _env("FRAUD_SPIKE_BASE_RPS", 200)
    spike_factor: float = _env("FRAUD_SPIKE_FACTOR", 20)
    spike_before_s: float = _env("FRAUD_SPIKE_BEFORE_S", 15)
    spike_hold_s: float = _env("FRAUD_SPIKE_HOLD_S", 10)
    spike_after_s: float = _env("FRAUD_SPIKE_AFTER_S", 15)

    def users_for(self, rps: float) -> int:
        return max(1, math.ceil(rps / self.user_rps))


SCENARIO = Scenario()
HEADERS = {"Content-Type": "application/json"}
# a stack that requires an API key gets it from the same variable the stack reads
if os.environ.get("FRAUD_API_KEY"):
    HEADERS["X-API-Key"] = os.environ["FRAUD_API_KEY"]
CHOSEN = os.environ.get("FRAUD_SCENARIO", "").strip().lower()
BATCH_ROWS = int(_env("FRAUD_BATCH_ROWS", 16))


# payloads: built once, before Locust forks its worker processes


@dataclass(frozen=True)
class Payload:
    body: bytes
    expected: list[float]  # P(fraud) per row, from training


def build_payloads(count: int, fraud_share: float) -> dict[str, list[Payload]]:
    mix = held_out_mix(count=count, fraud_share=fraud_share)
    pairs = list(zip(mix.rows, mix.scores, strict=True))
    batches = [pairs[i : i + BATCH_ROWS] for i in range(0, len(pairs), BATCH_ROWS)]
    return {
        "predict": [
            Payload(json.dumps({"features": row}).encode(), [score])
            for row, score in pairs
        ],
        "batch": [
            Payload(
                json.dumps({"instances": [row for row, _ in batch]}).encode(),
                [score for _, score in batch],
            )
            for batch in batches
        ],
        "kserve": [
            Payload(json.dumps(kserve_request([row])).encode(), [score])
            for row, score in pairs
        ],
    }


def kserve_request(rows: list[list[float]]) -> dict:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": [len(rows), len(rows[0])],
                "datatype": "FP32",
                "data": rows,
            }
        ],
        "outputs": [{"name": "probabilities"}],
    }


PAYLOADS = build_payloads(
    int(_env("FRAUD_PAYLOAD_ROWS", 2000)), _env("FRAUD_FRAUD_SHARE", 0.1)
)


# users


class ScoringUser(FastHttpUser):
    abstract = True
    wait_time = constant_throughput(SCENARIO.user_rps)
    # a slow answer counts as a failure after this many seconds, not a hang
    network_timeout = 10.0
    connection_timeout = 5.0
    kind = ""

    def on_start(self) -> None:
        self._next = self.environment.runner.user_count if self.environment else 0

    def payload(self) -> Payload:
        pool = PAYLOADS[self.kind]
        self._next = (self._next + 1) % len(pool)
        return pool[self._next]

    def post_checked(self, url: str, name: str, payload: Payload, check) -> None:
        headers = HEADERS
        with self.client.post(
            url, data=payload.body, headers=headers, name=name, catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
                return
            try:
                answer = json.loads(response.content)
            except (TypeError, ValueError):
                response.failure("answer is not JSON")
                return
            if problem := check(answer, payload.expected):
                response.failure(problem)


class PredictUser(ScoringUser):
    weight = 8
    kind = "predict"

    @task
    def predict(self) -> None:
        self.post_checked(
            "/predict",
            "POST /predict",
            self.payload(),
            lambda a, e: check_prediction(a, e[0]),
        )


class BatchUser(ScoringUser):
    weight = 1
    kind = "batch"

    @task
    def predict_batch(self) -> None:
        name = f"POST /predict/batch ({BATCH_ROWS} rows)"
        self.post_checked("/predict/batch", name, self.payload(), check_batch)


class KServeUser(ScoringUser):
    weight = 1
    kind = "kserve"

    @task
    def infer(self) -> None:
        # absolute URL: --host points every user at nginx, this one skips it
        base = self.environment.parsed_options.triton_url.rstrip("/")
        url = f"{base}/v2/models/fraud_xgb/infer"
        self.post_checked(
            url, "POST triton /v2/.../infer", self.payload(), check_kserve
        )


@events.init_command_line_parser.add_listener
def add_options(parser) -> None:
    parser.add_argument(
        "--triton-url",
        default=os.environ.get("FRAUD_LOCUST_TRITON_URL", "http://127.0.0.1:8000"),
        help="Triton's KServe v2 HTTP endpoint, for KServeUser",
        include_in_web_ui=True,
    )


# load shapes: abstract unless chosen, so Locust only sees the chosen one


class ScenarioShape(LoadTestShape):
    abstract = True
    name = ""

    def rate_at(self, seconds: float) -> float | None:
        raise NotImplementedError

    def tick(self):
        rate = self.rate_at(self.get_run_time())
        if rate is None:
            return None
        users = SCENARIO.users_for(rate)
        # start or stop the whole step within about a second, up and down alike:
        # a spike must be sudden, and so must its end
        return users, max(users, self.get_current_user_count(), 1)


class LoadShape(ScenarioShape):
    """The reference load: a constant rate for a fixed time."""

    name = "load"

    def rate_at(self, seconds: float) -> float | None:
        return SCENARIO.load_rps if seconds < SCENARIO.load_s else None


class StressShape(ScenarioShape):
    """A stepped ramp that ends when failures or p99 cross the limits."""

    name = "stress"
    broke = ""

    def rate_at(self, seconds: float) -> float | None:
        if seconds >= SCENARIO.stress_max_s:
            self.broke = f"reached {SCENARIO.stress_max_s:.0f} s without breaking"
            return None
        step = int(seconds // SCENARIO.stress_step_s)
        rate = SCENARIO.stress_start_rps + step * SCENARIO.stress_step_rps
        # judge a step only once it has run a while at its own rate
        settled = seconds % SCENARIO.stress_step_s > SCENARIO.stress_step_s / 2
        if settled and (problem := self.limit_crossed()):
            self.broke = f"stopped at {rate:.0f} req/s target: {problem}"
            return None
        return rate

    def limit_crossed(self) -> str | None:
        total = self.runner.stats.total
        p99 = total.get_current_response_time_percentile(0.99) or 0
        failures = total.current_fail_per_sec
        sent = total.current_rps
        if p99 > SCENARIO.stress_p99_ms:
            return f"p99 {p99:.0f} ms over {SCENARIO.stress_p99_ms:.0f} ms"
        if sent and failures / sent > SCENARIO.stress_fail_ratio:
            return (
                f"{failures / sent:.1%} failures over {SCENARIO.stress_fail_ratio:.0%}"
            )
        return None


class SpikeShape(ScenarioShape):
    """Base rate, then a sudden jump held for a while, then the base rate again."""

    name = "spike"

    def rate_at(self, seconds: float) -> float | None:
        s = SCENARIO
        if seconds < s.spike_before_s:
            return s.spike_base_rps
        if seconds < s.spike_before_s + s.spike_hold_s:
            return s.spike_base_rps * s.spike_factor
        if seconds < s.spike_before_s + s.spike_hold_s + s.spike_after_s:
            return s.spike_base_rps
        return None


SHAPES = {shape.name: shape for shape in (LoadShape, StressShape, SpikeShape)}
if CHOSEN not in ("", "all", *SHAPES):
    raise SystemExit(
        f"FRAUD_SCENARIO={CHOSEN!r}; expected one of {sorted(SHAPES)}, 'all' or empty"
    )
for _name, _shape in SHAPES.items():
    _shape.abstract = CHOSEN not in (_name, "all")


# the master's monitor: Locust's own CPU and a per-second timeline


class Monitor:
    """Samples every Locust process's CPU and the aggregated stats each second."""

    def __init__(self, environment):
        self.environment = environment
        self.rows: list[dict] = []
        self._last_times: dict[int, int] = {}
        self._me = psutil.Process()
        self._procs: dict[int, psutil.Process] = {}

    def cpu_cores(self) -> float:
        """CPU of this process and its forked workers, in cores, since last call."""
        procs = [self._me, *self._me.children(recursive=True)]
        total = 0.0
        for proc in procs:
            known = self._procs.setdefault(proc.pid, proc)
            try:
                total += known.cpu_percent(None) / 100
            except psutil.NoSuchProcess:
                self._procs.pop(proc.pid, None)
        return total

    def sample(self) -> None:
        """Users, CPU and the latency of answers reported since the last sample."""
        stats = self.environment.stats.total
        times = dict(stats.response_times)
        window = {t: n - self._last_times.get(t, 0) for t, n in times.items()}
        self._last_times = times
        self.rows.append(
            {
                # a sample taken during second T describes second T - 1
                "second": int(time.time()) - 1,
                "users": self.environment.runner.user_count,
                "p50_ms": _percentile(window, 0.50),
                "p99_ms": _percentile(window, 0.99),
                "locust_cpu_cores": round(self.cpu_cores(), 2),
            }
        )

    def run(self) -> None:
        self.cpu_cores()  # the first psutil reading only sets a baseline
        while True:
            gevent.sleep(1.0)
            self.sample()

    def summary(self) -> dict:
        busy = [r["locust_cpu_cores"] for r in self.timeline() if r["requests_per_s"]]
        busy = [c for c in busy if c != ""]
        return {
            "locust_cpu_mean_cores": round(sum(busy) / len(busy), 2) if busy else 0.0,
            "locust_cpu_peak_cores": max(busy, default=0.0),
            "cores": os.cpu_count(),
        }

    def timeline(self) -> list[dict]:
        """One row per second of the run.

        Counts come from Locust's per-second tallies, keyed by when each answer
        arrived, so they do not depend on when workers happened to report;
        latency, users and CPU come from this monitor's samples.
        """
        total = self.environment.stats.total
        answered, failed = total.num_reqs_per_sec, total.num_fail_per_sec
        if not answered:
            return []
        samples = {row["second"]: row for row in self.rows}
        first, last = min(answered), max(answered)
        rows, users = [], 0
        for second in range(first, last + 1):
            sample = samples.get(second, {})
            users = sample.get("users", users)
            rows.append(
                {
                    "t_s": second - first,
                    "users": users,
                    "requests_per_s": answered.get(second, 0),
                    "failures_per_s": failed.get(second, 0),
                    "p50_ms": sample.get("p50_ms", ""),
                    "p99_ms": sample.get("p99_ms", ""),
                    "locust_cpu_cores": sample.get("locust_cpu_cores", ""),
                }
            )
        return rows

    def write(self, prefix: str) -> None:
        rows = self.timeline()
        if not rows:
            return
        with open(f"{prefix}_timeline.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def _percentile(histogram: dict[int, int], fraction: float) -> float | str:
    """Percentile of a {rounded ms: count} histogram; blank when it is empty."""
    count = sum(n for n in histogram.values() if n > 0)
    if not count:
        return ""
    seen = 0
    for value in sorted(histogram):
        seen += max(histogram[value], 0)
        if seen >= fraction * count:
            return value
    return max(histogram)


MONITOR: Monitor | None = None
_SAMPLER: gevent.Greenlet | None = None


@events.test_start.add_listener
def start_monitor(environment, **_kwargs) -> None:
    global MONITOR, _SAMPLER
    if isinstance(environment.runner, WorkerRunner):
        return
    if _SAMPLER is not None:  # a new run from the web UI: start a new timeline
        _SAMPLER.kill(block=False)
    MONITOR = Monitor(environment)
    _SAMPLER = gevent.spawn(MONITOR.run)


@events.test_stop.add_listener
def report_monitor(environment, **_kwargs) -> None:
    if MONITOR is None or isinstance(environment.runner, WorkerRunner):
        return
    if _SAMPLER is not None:
        _SAMPLER.kill(block=False)
    MONITOR.sample()
    options = environment.parsed_options
    prefix = getattr(options, "csv_prefix", None)
    summary = MONITOR.summary()
    shape = environment.shape_class
    summary.update(
        scenario=getattr(shape, "name", "") or "users",
        stopped=getattr(shape, "broke", ""),
        processes=getattr(options, "processes", None) or 1,
        workers=(
            environment.runner.worker_count
            if isinstance(environment.runner, MasterRunner)
            else 0
        ),
        user_classes=sorted(c.__name__ for c in environment.user_classes),
        user_rps=SCENARIO.user_rps,
        overrides={
            n: os.environ[n]
            for n in SETTINGS_READ
            if n in os.environ and n != "FRAUD_SCENARIO"
        },
        locust_version=locust.__version__,
        settings=asdict(SCENARIO),
        host=environment.host,
        triton_url=getattr(options, "triton_url", ""),
    )
    if prefix:
        MONITOR.write(prefix)
        with open(f"{prefix}_summary.json", "w") as handle:
            json.dump(summary, handle, indent=2)
    if summary["stopped"]:
        logger.info("stress: %s", summary["stopped"])
    logger.info(
        "locust CPU: mean %.2f cores, peak %.2f of %s (master and %s workers)",
        summary["locust_cpu_mean_cores"],
        summary["locust_cpu_peak_cores"],
        summary["cores"],
        summary["workers"],
    )


@events.quit.add_listener
def stop_csv_writer(**_kwargs) -> None:
    """Stop Locust's CSV writer before Locust closes its files.

    Locust 2.47 closes the CSV files at shutdown while its writer greenlet still
    runs; with --processes the master then waits for its workers, the writer
    wakes on a closed file and logs a ValueError traceback. Killing the writer
    here, just before the files close, ends it cleanly.
    """
    for obj in gc.get_objects():
        run = getattr(obj, "_run", None)
        if isinstance(obj, gevent.Greenlet) and getattr(run, "__name__", "") == (
            "stats_writer"
        ):
            obj.kill(block=False)
