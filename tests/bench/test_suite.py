"""The benchmark suite (bench/suite, `make bench`) end to end at a tiny size, so that it keeps
working: real quiverd and redis-servers, every system, both datasets, every scenario, the
results directory complete and consistent."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SUITE = ROOT / "bench" / "suite"
sys.path.insert(0, str(SUITE))

import worker  # noqa: E402
from clients import BASELINE, READ_ONLY, SERVED, SYSTEMS  # noqa: E402
from common import DATASETS  # noqa: E402

SETTINGS = {"BENCH_ROWS": "3000", "BENCH_RUNS": "2", "BENCH_ITERATIONS": "20", "BENCH_WARMUP": "5",
            "BENCH_CONCURRENCY": "1,2", "BENCH_THROUGHPUT_RUNS": "1", "BENCH_SECONDS": "0.3"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    subprocess.run([sys.executable, str(SUITE / "run.py")], check=True, timeout=600,
                   env={**os.environ, **SETTINGS, "BENCH_OUT": str(out)}, stdout=subprocess.DEVNULL)
    return out, json.loads((out / "results.json").read_text())


def test_every_system_and_scenario_is_measured(results):
    _, data = results
    assert data["settings"]["rows"] == 3000 and data["settings"]["concurrency"] == [1, 2]
    assert "make bench" in data["command"] and data["machine"]["cores"] >= 1
    assert set(data["datasets"]) == set(DATASETS)
    for figures in data["datasets"].values():
        assert set(figures["latency"]) == {"batch_arrive", "batch_matrix", "single_arrive",
                                           "single_matrix"}
        for scenario in figures["latency"].values():
            assert set(scenario) == set(SYSTEMS)
            for system in scenario.values():
                assert len(system["runs"]) == 2
                assert all(run["samples"] == 20 for run in system["runs"])
                assert 0 < system["p50_us"] <= system["p99_us"] <= system["p999_us"]
                assert system["p50_us"] == np.median([run["p50_us"] for run in system["runs"]])
            assert scenario[BASELINE]["speedup_vs_mget"] == 1.0
        assert set(figures["ingest"]) == set(SYSTEMS) - set(READ_ONLY)  # quiver shm loads nothing
        assert all(f["rows_per_s"] > 0 for f in figures["ingest"].values())
        assert set(figures["memory"]) == {"quiver HTTP", "quiver Flight", "redis MGET", "redis HMGET"}
        assert set(figures["throughput"]) == set(SERVED)
        for levels in figures["throughput"].values():
            assert set(levels) == {"1", "2"}
            assert all(level["requests_per_s"] > 0 and level["p99_us"] > 0
                       for level in levels.values())


def test_report_has_tables_and_plots(results):
    out, data = results
    markdown = (out / "results.md").read_text()
    for name in DATASETS:
        for kind in ("latency", "throughput"):
            png = out / f"{kind}_{name}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"({png.name})" in markdown
    assert markdown.count("| quiver HTTP |") == 4 * len(DATASETS)  # 2 latency, ingest, throughput
    assert markdown.count("| quiver shm |") == 3 * len(DATASETS)  # 2 latency, throughput
    assert data["command"] in markdown


def test_a_wrong_answer_stops_the_worker():
    dataset = DATASETS["float32x10"]
    ids = np.array([3, 1, 2])

    class Wrong:
        def matrix(self, keys):
            answer = dataset.block(ids).copy()
            answer[1, 4] += 0.5
            return answer

    with pytest.raises(SystemExit, match="wrong answer"):
        worker.check(Wrong(), dataset, ids, [str(i) for i in ids])


def test_unknown_settings_are_refused():
    answer = subprocess.run([sys.executable, str(SUITE / "run.py")], capture_output=True, text=True,
                            env={**os.environ, "BENCH_SYSTEMS": "memcached"})
    assert answer.returncode != 0 and "unknown system 'memcached'" in answer.stderr


def test_the_schema_change_benchmark_runs_and_reports():
    answer = subprocess.run([sys.executable, str(SUITE / "schema_change.py")], capture_output=True,
                            text=True, env={**os.environ, "BENCH_ROWS": "20000"}, timeout=300)
    assert answer.returncode == 0, answer.stderr
    assert "| change answered after |" in answer.stdout
    assert "| 1,000-key fetches during: p50 / p99 / max |" in answer.stdout
