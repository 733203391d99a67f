"""The Feast benchmark (bench/suite/feast_store.py, `make bench-feast`) end to end at a tiny size,
so that it keeps running: every store measured, results written."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_feast_benchmark_runs_and_reports():
    env = dict(os.environ, BENCH_FEAST_ENTITIES="300", BENCH_FEAST_FEATURES="10",
               BENCH_FEAST_ITERATIONS="40")
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "suite" / "feast_store.py")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    where = result.stdout.strip().splitlines()[-1].removeprefix("written to ")
    results = json.loads((pathlib.Path(where) / "results.json").read_text())
    assert set(results["results"]) == {"quiver http", "quiver embedded", "redis"}
    for figures in results["results"].values():
        assert figures["online_read_100"]["p50_us"] > 0
