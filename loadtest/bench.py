"""Sweep Triton with perf_analyzer: batch 1 and 16, HTTP (JSON and binary) and gRPC.

    make bench                # full sweep against the stack on the default ports
    make bench QUICK=1        # smoke: two concurrency levels, fixed request counts
    .venv/bin/python -m loadtest.bench --http 127.0.0.1:8000 --grpc 127.0.0.1:8001

perf_analyzer comes from the tritonclient 2.50.0 wheel in its own virtual
environment (``make perf-install``). Every point is one perf_analyzer run with its
own CSV under ``loadtest/results/perf/raw/``; ``sweep.csv`` merges them with the
load generator's own CPU, and a summary table is printed at the end.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from loadtest.payloads import held_out_mix

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "loadtest" / "results" / "perf"
MODEL = "fraud_xgb"

# what each mode adds to the perf_analyzer command; HTTP tensors default to
# binary, so the JSON mode names both formats to match what the gateway sends
MODES = {
    "http-json": [
        "-i",
        "http",
        "--input-tensor-format=json",
        "--output-tensor-format=json",
    ],
    "http-binary": [
        "-i",
        "http",
        "--input-tensor-format=binary",
        "--output-tensor-format=binary",
    ],
    "grpc": ["-i", "grpc"],
}

# A point is measured in windows until three in a row agree within the stability
# band (max/min of throughput and p99). Quick mode takes short windows and a wide
# band so the smoke sweep stays well under a minute. A point that never settles
# (other load on a shared machine, a server just started) is measured again with
# wider bands and flagged, rather than dropped.
QUICK_WINDOW_MS = 500
WIDE_BAND_PERCENT = 100
# max/min up to 5; past that, any three windows in a row: a server that stalls
# now and then still gets a row (with its p99 showing the stalls), not an abort
LAST_BAND_PERCENT = 400
ANY_BAND_PERCENT = 100_000


@dataclass(frozen=True)
class Point:
    mode: str
    batch: int
    concurrency: int

    @property
    def name(self) -> str:
        return f"{self.mode}_b{self.batch}_c{self.concurrency}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    http_port = os.environ.get("FRAUD_TRITON_HTTP_PORT", "8000")
    grpc_port = os.environ.get("FRAUD_TRITON_GRPC_PORT", "8001")
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--http", default=f"127.0.0.1:{http_port}")
    parser.add_argument("--grpc", default=f"127.0.0.1:{grpc_port}")
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--perf-venv", type=Path, default=ROOT / ".venv-perf")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--concurrency", default="1,2,4,8,16")
    parser.add_argument(
        "--interval-ms", type=int, default=1500, help="one measurement window"
    )
    parser.add_argument(
        "--stability", type=int, default=40, help="allowed spread, percent"
    )
    parser.add_argument("--rows", type=int, default=512, help="held-out rows sent")
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("QUICK", "") not in ("", "0"),
        help=f"concurrency 1 and 4, {QUICK_WINDOW_MS} ms windows",
    )
    args = parser.parse_args(argv)
    unknown = set(args.modes.split(",")) - set(MODES)
    if unknown:
        parser.error(f"--modes has {sorted(unknown)}; expected some of {list(MODES)}")
    return args


def sweep_points(args: argparse.Namespace) -> list[Point]:
    levels = [1, 4] if args.quick else _ints(args.concurrency)
    return [
        Point(mode, batch, level)
        for batch in _ints(args.batches)
        for mode in args.modes.split(",")
        for level in levels
    ]


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


# perf_analyzer


def perf_analyzer_env(perf_venv: Path) -> tuple[Path, dict]:
    """The binary, and an environment where it finds the wheel's libcudart.so.12."""
    binary = perf_venv / "bin" / "perf_analyzer"
    if not binary.exists():
        sys.exit(f"{binary} is missing: run `make perf-install`")
    libs = sorted(perf_venv.glob("lib/python3*/site-packages/nvidia/cuda_runtime/lib"))
    if not libs:
        sys.exit(f"no nvidia-cuda-runtime-cu12 wheel in {perf_venv}: make perf-install")
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(
        p for p in (str(libs[-1]), env.get("LD_LIBRARY_PATH", "")) if p
    )
    return binary, env


def write_input_data(path: Path, rows: int) -> Path:
    """perf_analyzer's --input-data file: one held-out row per step."""
    mix = held_out_mix(count=rows)
    steps = [{"input": {"content": row, "shape": [len(row)]}} for row in mix.rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": steps}))
    return path


def point_command(
    args: argparse.Namespace,
    point: Point,
    data: Path,
    csv_path: Path,
    window_ms: int,
    band: int,
) -> list[str]:
    url = args.grpc if point.mode == "grpc" else args.http
    command = [
        "-m",
        args.model,
        "-u",
        url,
        *MODES[point.mode],
        "-b",
        str(point.batch),
        f"--concurrency-range={point.concurrency}:{point.concurrency}",
        f"--input-data={data}",
        "--percentile=99",
        "-f",
        str(csv_path),
        f"--measurement-interval={window_ms}",
        f"--stability-percentage={band}",
        "--max-trials=6",
    ]
    return command


def host_busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def run_perf_analyzer(
    binary: Path, env: dict, command: list[str], log: Path
) -> tuple[int, float, float]:
    """Exit code, perf_analyzer's own CPU and the whole machine's, both in cores."""
    busy0, total0 = host_busy_jiffies()
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(binary), *command], stdout=out, stderr=subprocess.STDOUT, env=env
        )
        # wait4 hands back the child's rusage: its CPU time, not the machine's
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = max(time.monotonic() - started, 1e-6)
    busy1, total1 = host_busy_jiffies()
    cores = os.cpu_count() or 1
    host = (busy1 - busy0) / max(total1 - total0, 1) * cores
    return process.returncode, (usage.ru_utime + usage.ru_stime) / wall, host


# one point, the sweep


def measure(args, binary: Path, env: dict, point: Point, data: Path) -> dict:
    raw = args.out / "raw"
    csv_path, log = raw / f"{point.name}.csv", raw / f"{point.name}.log"
    if args.quick:
        window, band, stable = QUICK_WINDOW_MS, WIDE_BAND_PERCENT, "quick"
    else:
        window, band, stable = args.interval_ms, args.stability, "yes"
    command = point_command(args, point, data, csv_path, window, band)
    code, cpu, host = run_perf_analyzer(binary, env, command, log)
    for wider in (WIDE_BAND_PERCENT, LAST_BAND_PERCENT, ANY_BAND_PERCENT):
        if code == 0 or wider <= band or "obtain stable" not in log.read_text():
            continue
        command = point_command(args, point, data, csv_path, window, wider)
        code, cpu, host = run_perf_analyzer(binary, env, command, log)
        stable = "no: never settled" if wider == ANY_BAND_PERCENT else f"no: ±{wider} %"
    if code != 0 or not csv_path.exists():
        tail = log.read_text().strip().splitlines()[-3:]
        raise RuntimeError(f"perf_analyzer failed on {point.name}: {' | '.join(tail)}")

    with csv_path.open() as handle:
        row = next(csv.DictReader(handle))
    infer_s = float(row["Inferences/Second"])
    return {
        "mode": point.mode,
        "batch": point.batch,
        "concurrency": point.concurrency,
        "infer_per_s": round(infer_s, 1),
        "requests_per_s": round(infer_s / point.batch, 1),
        **{f"p{p}_ms": int(row[f"p{p} latency"]) / 1000 for p in (50, 90, 95, 99)},
        "server_queue_ms": int(row["Server Queue"]) / 1000,
        "server_compute_ms": int(row["Server Compute Infer"]) / 1000,
        "loadgen_cpu_cores": round(cpu, 2),
        "host_busy_cores": round(host, 2),
        "stable": stable,
        "command": "perf_analyzer " + " ".join(_relative(c) for c in command),
    }


def _relative(arg: str) -> str:
    """Paths inside the repository, written relative to it, for the report."""
    prefix, _, path = arg.rpartition("=") if "=" in arg else ("", "", arg)
    if path.startswith(str(ROOT)):
        path = os.path.relpath(path, ROOT)
    return f"{prefix}={path}" if prefix else path


def bench_command(args: argparse.Namespace) -> str:
    """The make command for this sweep, naming ports only where not the default."""
    ports = [
        f"FRAUD_TRITON_{kind}_PORT={target.rpartition(':')[2]}"
        for kind, target, default in (
            ("HTTP", args.http, "127.0.0.1:8000"),
            ("GRPC", args.grpc, "127.0.0.1:8001"),
        )
        if target != default
    ]
    return " ".join([*ports, "make bench", *(["QUICK=1"] if args.quick else [])])


def server_version(http: str) -> str:
    with urllib.request.urlopen(f"http://{http}/v2", timeout=5) as answer:
        return json.load(answer).get("version", "unknown")


def machine() -> dict:
    memory_kb = 0
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    model = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(memory_kb / 2**20, 1),
        "python": sys.version.split()[0],
    }


def write_results(out: Path, rows: list[dict], meta: dict) -> Path:
    path = out / "sweep.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "sweep.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def summary_table(rows: list[dict]) -> str:
    header = (
        f"{'mode':<12} {'batch':>5} {'conc':>4} {'infer/s':>9} {'req/s':>8} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'PA cpu':>6} {'host':>5}  stable"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['mode']:<12} {r['batch']:>5} {r['concurrency']:>4} "
            f"{r['infer_per_s']:>9.0f} {r['requests_per_s']:>8.0f} "
            f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} "
            f"{r['loadgen_cpu_cores']:>6.2f} {r['host_busy_cores']:>5.2f}  "
            f"{r['stable']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    binary, env = perf_analyzer_env(args.perf_venv)
    args.out = args.out.resolve()
    (args.out / "raw").mkdir(parents=True, exist_ok=True)
    data = write_input_data(args.out / "input_data.json", args.rows)
    points = sweep_points(args)
    started = time.monotonic()

    rows = []
    for number, point in enumerate(points, 1):
        print(f"[{number}/{len(points)}] {point.name}", flush=True)
        rows.append(measure(args, binary, env, point, data))

    meta = {
        "command": bench_command(args),
        "targets": {"http": args.http, "grpc": args.grpc},
        "quick": args.quick,
        "triton_version": server_version(args.http),
        "perf_analyzer": "tritonclient 2.50.0 wheel",
        "input_rows": args.rows,
        "window_ms": QUICK_WINDOW_MS if args.quick else args.interval_ms,
        "stability_percent": WIDE_BAND_PERCENT if args.quick else args.stability,
        "measured_at": time.strftime("%Y-%m-%d %H:%M %Z"),
        "seconds": round(time.monotonic() - started, 1),
        "machine": machine(),
    }
    path = write_results(args.out, rows, meta)
    print(f"\n{summary_table(rows)}\n")
    print(
        "PA cpu: perf_analyzer's own CPU in cores; host: the whole machine's busy "
        f"cores.\n{len(rows)} points in {meta['seconds']} s; {_relative(str(path))}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
