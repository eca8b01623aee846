"""BENCHMARKS.md and its plots come from the results folder, commands included."""

import csv
import json

import pytest

from tests.loadtest.conftest import require_module

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def report():
    require_module("matplotlib")
    from loadtest import report

    return report


def write_csv(path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def sweep_row(mode: str, batch: int, concurrency: int) -> dict:
    rate = 1000.0 * concurrency
    return {
        "mode": mode,
        "batch": batch,
        "concurrency": concurrency,
        "infer_per_s": rate * batch,
        "requests_per_s": rate,
        "p50_ms": 0.8,
        "p90_ms": 1.1,
        "p95_ms": 1.3,
        "p99_ms": 2.5,
        "server_queue_ms": 0.1,
        "server_compute_ms": 0.3,
        "loadgen_cpu_cores": 0.2,
        "host_busy_cores": 1.5,
        "stable": "yes",
        "command": "perf_analyzer -m fraud_xgb -i http --input-tensor-format=json",
    }


def stats_row(name: str, count: int, failures: int) -> dict:
    return {
        "Type": "POST" if name != "Aggregated" else "",
        "Name": name,
        "Request Count": count,
        "Failure Count": failures,
        "Requests/s": count / 30,
        "Max Response Time": 80.5,
        "50%": 6,
        "95%": 12,
        "99%": 30,
    }


@pytest.fixture
def results(tmp_path):
    folder = tmp_path / "results"
    rows = [
        sweep_row(mode, batch, level)
        for mode in ("http-json", "http-binary", "grpc")
        for batch in (1, 16)
        for level in (1, 2, 4)
    ]
    write_csv(folder / "perf" / "sweep.csv", rows)
    meta = {
        "command": "make bench",
        "quick": False,
        "triton_version": "2.51.0",
        "input_rows": 512,
        "measured_at": "2026-01-01 12:00 UTC",
        "seconds": 200,
        "machine": {"cores": 2, "cpu": "Test CPU", "memory_gib": 24, "python": "3.11"},
    }
    (folder / "perf" / "sweep.json").write_text(json.dumps(meta))

    write_csv(
        folder / "locust" / "spike_stats.csv",
        [stats_row("POST /predict", 6000, 12), stats_row("Aggregated", 6000, 12)],
    )
    write_csv(
        folder / "locust" / "spike_failures.csv",
        [
            {
                "Method": "POST",
                "Name": "POST /predict",
                "Error": "status 503",
                "Occurrences": 12,
            }
        ],
    )
    write_csv(
        folder / "locust" / "spike_timeline.csv",
        [
            {
                "t_s": t,
                "users": 50 if t < 5 else 1000,
                "requests_per_s": 200,
                "failures_per_s": 0,
                "p50_ms": 5,
                "p99_ms": "" if t == 3 else 40,
                "locust_cpu_cores": 0.3,
            }
            for t in range(10)
        ],
    )
    summary = {
        "locust_cpu_mean_cores": 0.4,
        "locust_cpu_peak_cores": 0.9,
        "cores": 2,
        "scenario": "spike",
        "stopped": "",
        "workers": 2,
        "user_classes": ["BatchUser", "PredictUser"],
        "user_rps": 4,
        "overrides": {"FRAUD_SPIKE_HOLD_S": "5"},
        "settings": {"spike_base_rps": 50, "spike_factor": 20, "spike_hold_s": 5},
    }
    (folder / "locust" / "spike_summary.json").write_text(json.dumps(summary))
    return folder


def test_each_table_sits_under_the_command_that_made_it(report, results, tmp_path):
    out = tmp_path / "BENCHMARKS.md"

    report.main(["--results", str(results), "--out", str(out)])

    text = out.read_text()
    bench = text.index("```sh\nmake bench\n```")
    assert bench < text.index("| HTTP, JSON tensors | 1 | 1 | 1,000 |")
    command = (
        'FRAUD_SPIKE_HOLD_S=5 make loadtest SCENARIO=spike LOCUST_USERS="BatchUser'
    )
    spike = text.index(command)
    assert spike < text.index("| POST /predict | 6000 | 12 |")
    assert "| POST /predict | status 503 | 12 |" in text
    assert "mean 0.4 and peak 0.9 cores of 2" in text
    assert "### Spike: 20 × the base rate of 50 req/s for 5 s" in text
    assert "2 cores (Test CPU), 24 GiB memory" in text and "Triton 2.51.0" in text


def test_headlines_come_from_the_tables(report, results, tmp_path):
    out = tmp_path / "BENCHMARKS.md"

    report.main(["--results", str(results), "--out", str(out)])

    text = out.read_text()
    assert "- Triton alone: up to 64,000 rows/s (batch 16" in text
    assert "- Locust spike through nginx: 6,000 requests, 12 failed, p99 30 ms" in text


def test_plots_are_written_and_linked(report, results, tmp_path):
    out = tmp_path / "BENCHMARKS.md"

    report.main(["--results", str(results), "--out", str(out)])

    text = out.read_text()
    for name in ("bench_throughput.png", "bench_latency.png", "locust_spike.png"):
        image = tmp_path / "docs" / "img" / name
        assert image.read_bytes().startswith(PNG_MAGIC)
        assert f"(docs/img/{name})" in text


def test_missing_results_name_the_command_to_run(report, tmp_path):
    out = tmp_path / "BENCHMARKS.md"

    report.main(["--results", str(tmp_path / "empty"), "--out", str(out)])

    text = out.read_text()
    assert "Not measured yet: run `make bench`." in text
    for scenario in ("load", "stress", "spike"):
        assert f"run `make loadtest SCENARIO={scenario}`" in text


def test_text_outside_the_generated_part_survives_a_rerun(report, results, tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    report.main(["--results", str(results), "--out", str(out)])
    compare = "## Gateway comparison (`make compare`)"
    out.write_text(out.read_text().replace(compare, f"{compare}\n\nhand-written 42"))

    report.main(["--results", str(tmp_path / "empty"), "--out", str(out)])

    text = out.read_text()
    assert "hand-written 42" in text
    assert "Not measured yet: run `make bench`." in text
    assert text.count(report.BEGIN) == text.count(report.END) == 1


def test_a_file_without_markers_is_left_alone(report, tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\nall hand-written\n")

    with pytest.raises(SystemExit, match="markers"):
        report.main(["--results", str(tmp_path), "--out", str(out)])

    assert out.read_text() == "# Benchmarks\n\nall hand-written\n"
