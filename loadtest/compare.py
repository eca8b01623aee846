"""Side by side: in-process baseline, Triton direct, and /predict through nginx.

    make compare                      # both modes, defaults below
    .venv/bin/python -m loadtest.compare --mode throughput --duration 10 --rounds 3
    .venv/bin/python -m loadtest.compare --mode constant --rate 2000 --duration 20

Throughput mode runs the same closed-loop wrk load (same connections, duration and
held-out payload mix) against (a) the baseline design: FastAPI under gunicorn
scoring in-process, behind the same nginx settings, (b) Triton's KServe v2 HTTP
endpoint, batch 1, and (c) /predict through nginx; interleaved a, b, c per round,
so drift on a shared machine hits all three alike. Constant mode holds a fixed
request rate against (c) with h2load (open loop: each client sends on a timer).
Every figure comes with the load generator's own CPU.
"""

import argparse
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil

from deploy import stack
from loadtest import h2load

ROOT = stack.ROOT
WRK_SCRIPT = ROOT / "loadtest" / "wrk" / "bodies.lua"
RESULTS = ROOT / "loadtest" / "results"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--mode", choices=["both", "throughput", "constant"], default="both"
    )
    parser.add_argument("--duration", type=int, default=10, help="s per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rate", type=int, default=2000, help="constant req/s")
    parser.add_argument("--constant-duration", type=int, default=20)
    parser.add_argument("--baseline-workers", type=int, default=os.cpu_count())
    parser.add_argument("--baseline-port", type=int, default=8095)
    parser.add_argument("--baseline-nginx-port", type=int, default=8085)
    parser.add_argument("--rows", type=int, default=2000, help="payload mix size")
    return parser.parse_args()


# payloads


def write_payloads(folder: Path, rows: int) -> dict[str, Path]:
    """Held-out rows as request bodies: every fraud row, the rest normal rows."""
    data = np.load(ROOT / "data" / "holdout.npz")
    fraud = np.flatnonzero(data["labels"] == 1)
    normal = np.flatnonzero(data["labels"] == 0)[: max(rows - len(fraud), 0)]
    index = np.random.default_rng(0).permutation(np.concatenate([fraud, normal]))
    features = data["features"][index]

    predict = folder / "predict.jsonl"
    kserve = folder / "kserve.jsonl"
    predict.write_text(
        "".join(json.dumps({"features": r.tolist()}) + "\n" for r in features)
    )
    kserve.write_text(
        "".join(
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "input",
                            "shape": [1, 30],
                            "datatype": "FP32",
                            "data": r.tolist(),
                        }
                    ]
                }
            )
            + "\n"
            for r in features
        )
    )
    return {"predict": predict, "kserve": kserve}


# processes


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    sys.exit(f"{url} did not answer 200 within {timeout} s")


def start_baseline(args, settings, folder: Path) -> list[subprocess.Popen]:
    """gunicorn + uvicorn workers, and an nginx from the same template in front."""
    log = (folder / "baseline.log").open("w")
    gunicorn = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "loadtest.baseline.app:app",
            "-k",
            "uvicorn_worker.UvicornWorker",
            "-w",
            str(args.baseline_workers),
            "-b",
            f"127.0.0.1:{args.baseline_port}",
            "--keep-alive",
            "75",
            "--backlog",
            "4096",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    front = dataclasses.replace(
        settings,
        nginx_port=args.baseline_nginx_port,
        gateway_port=args.baseline_port,
        gateway_transport="tcp",
        run_dir=str(folder / "run"),
    )
    front.log_path.mkdir(parents=True, exist_ok=True)
    config = stack.write_nginx_config(front)
    nginx = subprocess.Popen(
        [
            stack.nginx_binary(),
            "-c",
            str(config),
            "-p",
            str(config.parent),
            "-g",
            "daemon off;",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{args.baseline_nginx_port}/ready")
    except SystemExit:
        stop([nginx, gunicorn])
        raise
    return [nginx, gunicorn]


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def run_measured(command: list[str], env: dict | None = None) -> tuple[str, float]:
    """Run a load generator; returns its output and the CPU seconds it used."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    with process.stdout:
        output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{command[0]} failed ({process.returncode}):\n{output}")
    return output, usage.ru_utime + usage.ru_stime


# throughput mode


def wrk(url: str, bodies: Path, args, duration: int) -> dict:
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    output, cpu = run_measured(command, env={**os.environ, "BODIES": str(bodies)})
    line = next(x for x in output.splitlines() if x.startswith("WRK_JSON "))
    raw = json.loads(line.removeprefix("WRK_JSON "))
    seconds = raw["duration_us"] / 1e6
    return {
        "rps": raw["requests"] / seconds,
        "p50_ms": raw["p50_us"] / 1e3,
        "p99_ms": raw["p99_us"] / 1e3,
        "errors": raw["non_2xx"] + raw["socket_errors"],
        "loadgen_cpu_pct": 100 * cpu / seconds,
    }


def cpu_seconds(pids: list[int]) -> float:
    """CPU time used so far by these processes and all their children."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def throughput(args, targets: dict[str, tuple[str, Path, list[int]]]) -> dict:
    for url, bodies, _ in targets.values():  # warm every path first
        wrk(url, bodies, args, duration=2)

    runs = {name: [] for name in targets}
    for round_number in range(1, args.rounds + 1):
        for name, (url, bodies, servers) in targets.items():
            before = cpu_seconds(servers)
            result = wrk(url, bodies, args, args.duration)
            requests = result["rps"] * args.duration
            result["server_cpu_us"] = 1e6 * (cpu_seconds(servers) - before) / requests
            runs[name].append(result)
            print(
                f"  round {round_number} {name:<28} {result['rps']:8.0f} req/s  "
                f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  "
                f"errors {result['errors']}  server CPU "
                f"{result['server_cpu_us']:.0f} us/req  "
                f"wrk CPU {result['loadgen_cpu_pct']:.0f}%",
                flush=True,
            )
    return runs


def summarize(runs: dict) -> dict:
    summary = {}
    for name, results in runs.items():
        summary[name] = {
            key: (sum if key == "errors" else statistics.median)(
                [r[key] for r in results]
            )
            for key in results[0]
        }
    return summary


def round_ratios(runs: dict, top: str, bottom: str) -> list[float]:
    return [t["rps"] / b["rps"] for t, b in zip(runs[top], runs[bottom], strict=True)]


# constant-rate mode


def constant_rate(args, url: str, folder: Path) -> dict:
    """Open-loop load: one h2load per row, two fraud and two normal rows."""
    data = np.load(ROOT / "data" / "holdout.npz")
    picks = [
        *np.flatnonzero(data["labels"] == 1)[:2],
        *np.flatnonzero(data["labels"] == 0)[:2],
    ]
    runs = [
        h2load.start(
            url,
            data["features"][row].tolist(),
            folder,
            rate=args.rate / len(picks),
            seconds=args.constant_duration,
        )
        for row in picks
    ]
    answers = [answer for run in runs for answer in h2load.finish(run)]

    latencies = np.array([a.latency_ms for a in answers])
    starts = [a.start_s for a in answers]
    return {
        "target_rps": args.rate,
        "achieved_rps": len(answers) / (max(starts) - min(starts)),
        "requests": len(answers),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "max_ms": float(latencies.max()),
        "errors": sum(1 for a in answers if a.status != 200),
        "loadgen_cpu_pct": 100 * sum(r.cpu_s for r in runs) / args.constant_duration,
    }


# memory


def supervisord_pid(settings) -> int:
    return int((settings.run_path / "supervisord.pid").read_text())


def triton_pids(settings) -> list[int]:
    """tritonserver (its backend stubs are its children)."""
    children = psutil.Process(supervisord_pid(settings)).children()
    return [p.pid for p in children if "tritonserver" in " ".join(p.cmdline()[:1])]


def stack_memory(settings) -> dict[str, float]:
    """Resident MB of every process under the stack's supervisord."""
    groups: dict[str, float] = {}
    for process in psutil.Process(supervisord_pid(settings)).children(recursive=True):
        try:
            name = " ".join(process.cmdline()[:1]).rsplit("/", 1)[-1] or process.name()
            if name.startswith("python"):
                name = "gateway (uvicorn)"
            groups[name] = groups.get(name, 0.0) + process.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
    return groups


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    memory = psutil.virtual_memory().total / 2**30
    python = sys.version.split()[0]
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, Python {python}"


def main() -> None:
    args = parse_args()
    settings = stack.load_settings()
    if not stack.is_running(settings):
        stack.up(settings)
    folder = Path(tempfile.mkdtemp(prefix="compare-", dir=settings.run_path))
    payloads = write_payloads(folder, args.rows)
    nginx = settings.base_url
    report: dict = {"machine": machine(), "args": vars(args)}
    print(f"machine: {report['machine']}")

    if args.mode in ("both", "throughput"):
        baseline = start_baseline(args, settings, folder)
        try:
            targets = {
                "a baseline (in-process)": (
                    f"http://127.0.0.1:{args.baseline_nginx_port}/predict",
                    payloads["predict"],
                    [p.pid for p in baseline],
                ),
                "b Triton KServe v2 direct": (
                    f"http://127.0.0.1:{settings.triton_http_port}"
                    "/v2/models/fraud_xgb/infer",
                    payloads["kserve"],
                    triton_pids(settings),
                ),
                "c /predict through nginx": (
                    f"{nginx}/predict",
                    payloads["predict"],
                    [supervisord_pid(settings)],
                ),
            }
            print(
                f"throughput: wrk -t{args.threads} -c{args.connections} "
                f"-d{args.duration}s, {args.rounds} interleaved rounds"
            )
            runs = throughput(args, targets)
        finally:
            stop(baseline)
        summary = summarize(runs)
        a, b, c = list(summary)
        report["throughput"] = {
            "runs": runs,
            "median": summary,
            "c/a": round_ratios(runs, c, a),
            "c/b": round_ratios(runs, c, b),
        }
        print(
            f"\n{'target':<28} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'errors':>6} {'server CPU/req':>14} {'wrk CPU':>7}"
        )
        for name, s in summary.items():
            print(
                f"{name:<28} {s['rps']:8.0f} {s['p50_ms']:7.2f} {s['p99_ms']:7.2f} "
                f"{s['errors']:6d} {s['server_cpu_us']:11.0f} us "
                f"{s['loadgen_cpu_pct']:6.0f}%"
            )
        for ratio in ("c/a", "c/b"):
            values = report["throughput"][ratio]
            print(
                f"{ratio}: median {statistics.median(values):.2f} "
                f"(rounds: {', '.join(f'{v:.2f}' for v in values)})"
            )

    if args.mode in ("both", "constant"):
        result = constant_rate(args, f"{nginx}/predict", folder)
        report["constant"] = result
        print(
            f"\nconstant {args.rate} req/s for {args.constant_duration} s through "
            f"nginx (h2load, open loop): achieved {result['achieved_rps']:.0f} req/s, "
            f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
            f"max {result['max_ms']:.2f} ms, errors {result['errors']}, "
            f"h2load CPU {result['loadgen_cpu_pct']:.0f}%"
        )

    memory = stack_memory(settings)
    report["memory_mb"] = memory
    print(
        "\nresident memory of the native stack: "
        + ", ".join(f"{name} {mb:.0f} MB" for name, mb in sorted(memory.items()))
        + f"; total {sum(memory.values()):.0f} MB"
    )

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
