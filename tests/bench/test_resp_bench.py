"""The RESP comparison (bench/suite/resp.py, `make bench-resp`) end to end at a tiny size: both
servers, every test and pipeline, memory per key, the no-op server's ceiling, the results
directory complete."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SETTINGS = {"BENCH_REQUESTS": "3000", "BENCH_RUNS": "1", "BENCH_KEYS": "3000",
            "BENCH_THREADS": "1,2", "BENCH_PIPELINES": "1,16"}


def test_resp_comparison_runs_and_reports(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "bench" / "suite" / "resp.py")], check=True,
                   timeout=600, env={**os.environ, **SETTINGS, "BENCH_OUT": str(tmp_path)},
                   stdout=subprocess.DEVNULL)
    data = json.loads((tmp_path / "results.json").read_text())
    assert set(data["throughput"]) == {"memory", "durable"}
    for by_threads in data["throughput"].values():
        assert set(by_threads) == {"1", "2"}
        for levels in by_threads.values():
            assert set(levels) == {"1", "16"}
            for systems in levels.values():
                assert set(systems) == {"quiverd", "redis-server"}
                for figures in systems.values():
                    assert set(figures) == {"SET", "GET", "HSET", "MGET (10 keys)"}
                    assert all(f["rps"] > 0 and f["p99_ms"] >= f["p50_ms"]
                               for f in figures.values())
                    # The server's CPU time over the requests (10 ms ticks: may be 0 at this size).
                    assert all(0 <= f["user_us_per_request"] + f["system_us_per_request"] < 1e6
                               for f in figures.values())
                assert all(f["rps_ratio_vs_redis"] > 0 for f in systems["quiverd"].values())
    for system in ("quiverd", "redis-server"):
        assert 16 < data["memory"][system]["used_memory_bytes_per_key"] < 2000
        hashes = data["hash_memory"][system]
        assert set(hashes) == {"packed", "table"}
        assert 16 < hashes["packed"]["used_memory_bytes_per_field"] < 2000
        assert hashes["packed"]["used_memory_bytes_per_field"] < hashes["table"][
            "used_memory_bytes_per_field"]
    # The ceiling: redis-benchmark's GET answered by a server that does no work.
    assert set(data["noop"]) == {"1", "16"}
    for figures in data["noop"].values():
        assert figures["rps"] > 0 and figures["p99_ms"] >= figures["p50_ms"]
        assert 0 < figures["client_cpu_share"] <= 2.5
    report = (tmp_path / "results.md").read_text()
    assert "## Ceiling: a server that does no work" in report
    assert "| MGET (10 keys) |" in report and "Memory per key" in report
    assert "Memory per hash field" in report
    assert "## durable: 1 server thread(s), pipeline 16" in report
