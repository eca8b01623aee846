"""`make bench`: perf_analyzer against Triton, one CSV per point, one summary."""

import csv
import json
import subprocess
import sys

import pytest

from loadtest import bench
from tests.loadtest.conftest import ROOT, require_perf_analyzer


def test_quick_mode_sweeps_two_levels_per_mode_and_batch():
    args = bench.parse_args(["--quick"])

    points = bench.sweep_points(args)

    assert {p.concurrency for p in points} == {1, 4}
    assert {p.batch for p in points} == {1, 16}
    assert {p.mode for p in points} == {"http-json", "http-binary", "grpc"}
    assert len(points) == 12


def test_json_mode_sends_and_asks_for_json_tensors(tmp_path):
    args = bench.parse_args([])
    point = bench.Point("http-json", 16, 4)

    command = bench.point_command(
        args, point, tmp_path / "data.json", tmp_path / "out.csv", 2000, 25
    )

    assert "--input-tensor-format=json" in command
    assert "--output-tensor-format=json" in command
    assert "--percentile=99" in command
    assert command[command.index("-b") + 1] == "16"
    assert "--concurrency-range=4:4" in command


def test_unknown_mode_is_refused():
    with pytest.raises(SystemExit):
        bench.parse_args(["--modes", "http-json,carrier-pigeon"])


def test_missing_perf_analyzer_names_the_install_target(tmp_path):
    with pytest.raises(SystemExit, match="make perf-install"):
        bench.perf_analyzer_env(tmp_path / "no-venv")


def test_input_data_is_held_out_rows(holdout, tmp_path):
    path = bench.write_input_data(tmp_path / "data.json", rows=8)

    steps = json.loads(path.read_text())["data"]

    assert len(steps) == 8
    known = {tuple(row) for row in holdout["features"].tolist()}
    for step in steps:
        assert step["input"]["shape"] == [30]
        assert tuple(step["input"]["content"]) in known


@pytest.mark.stack
def test_quick_bench_writes_a_csv_per_point_and_a_sweep(stack, tmp_path):
    require_perf_analyzer()
    out = tmp_path / "perf"

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest.bench",
            "--quick",
            "--http",
            stack.triton_http,
            "--grpc",
            stack.triton_grpc,
            "--modes",
            "http-json,grpc",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    with (out / "sweep.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8
    for row in rows:
        name = f"{row['mode']}_b{row['batch']}_c{row['concurrency']}"
        assert (out / "raw" / f"{name}.csv").exists()
        assert float(row["infer_per_s"]) > 0
        assert float(row["p99_ms"]) >= float(row["p50_ms"]) > 0
    assert json.loads((out / "sweep.json").read_text())["triton_version"]
    assert "p99 ms" in run.stdout and "PA cpu" in run.stdout
