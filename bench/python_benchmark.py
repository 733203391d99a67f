"""Python end to end: 1000 random keys x 10 float32 from an N-row table into a NumPy matrix.

Quiver embedded (quiver.open()), over HTTP and over Arrow Flight (quiver.connect), beside Redis
(Debian's redis-server, started here) holding each row as one packed float32 blob, read with one
MGET and decoded with numpy. Every system answers the same key sets, in the same run; each
timing covers the whole call from Python: request, transfer, decode, and the (1000, 10) float32
matrix in hand.

    BENCH_ROWS=10000000 .venv/bin/python bench/python_benchmark.py      (default 1,000,000 rows)
    BENCH_ITERATIONS (default 2000) timed reads per system after 200 warm-up reads.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa

import quiver

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from quiverd import QUIVERD, Server, free_port  # noqa: E402

ROWS = int(os.environ.get("BENCH_ROWS", 1_000_000))
ITERATIONS = int(os.environ.get("BENCH_ITERATIONS", 2000))
WARMUP = 200
KEYS = 1000
COLUMNS = 10
SETS = 256


def columns_for(start: int, stop: int) -> dict[str, np.ndarray]:
    ids = np.arange(start, stop)
    return {f"f{c}": (ids * (c + 1) % 1000).astype(np.float32) for c in range(COLUMNS)}


def load_quiver(db: quiver.Client) -> float:
    schema = pa.schema([("id", pa.string())] + [(f"f{c}", pa.float32()) for c in range(COLUMNS)])
    db.create_table("bench", schema, key="id")
    began = time.perf_counter()
    step = 1_000_000
    for start in range(0, ROWS, step):
        stop = min(ROWS, start + step)
        ids = pa.array(np.arange(start, stop).astype(str))
        db.write("bench", pa.table({"id": ids, **columns_for(start, stop)}))
    return time.perf_counter() - began


def start_redis(directory: str):
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is missing: run scripts/setup.sh (Debian's redis-server)")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", directory],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(200):
        try:
            client.ping()
            return process, client
        except redis.ConnectionError:
            time.sleep(0.02)
    raise SystemExit("redis-server did not start")


def load_redis(client) -> float:
    began = time.perf_counter()
    step = 100_000
    for start in range(0, ROWS, step):
        stop = min(ROWS, start + step)
        block = np.column_stack([v for v in columns_for(start, stop).values()])
        pipe = client.pipeline(transaction=False)
        chunk = 10_000
        for s in range(0, stop - start, chunk):
            rows = block[s:s + chunk]
            pipe.mset({str(start + s + i): rows[i].tobytes() for i in range(len(rows))})
        pipe.execute()
    return time.perf_counter() - began


def measure(read, key_sets) -> np.ndarray:
    for i in range(WARMUP):
        read(key_sets[i % len(key_sets)])
    times = np.empty(ITERATIONS)
    for i in range(ITERATIONS):
        keys = key_sets[i % len(key_sets)]
        began = time.perf_counter_ns()
        matrix = read(keys)
        times[i] = (time.perf_counter_ns() - began) / 1000
        assert matrix.shape == (KEYS, COLUMNS)
    return times


def main() -> None:
    rng = np.random.default_rng(42)
    id_sets = [rng.integers(0, ROWS, KEYS) for _ in range(SETS)]
    arrow_sets = [pa.array(ids.astype(str)) for ids in id_sets]
    str_sets = [[str(i) for i in ids] for ids in id_sets]
    expected = np.column_stack(list(columns_for(0, ROWS).values()))[id_sets[0]] if ROWS <= 2e6 else None
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(pathlib.Path(tmp))
        redis_process, redis_client = start_redis(tmp)
        try:
            embedded = quiver.open()
            http = quiver.connect(server.url)
            flight = quiver.connect(server.flight_url)
            print(f"{ROWS:,} rows x {COLUMNS} float32; {KEYS} random keys per read; "
                  f"{ITERATIONS} reads per system; quiverd {QUIVERD}", flush=True)
            print(f"load: embedded {load_quiver(embedded):.1f} s, quiverd over Flight "
                  f"{load_quiver(flight):.1f} s, redis MSET {load_redis(redis_client):.1f} s",
                  flush=True)

            def redis_read(keys):
                values = redis_client.mget(keys)
                return np.frombuffer(b"".join(values), dtype=np.float32).reshape(len(keys), COLUMNS)

            systems = {
                "quiver embedded": (lambda k: embedded.read("bench", k).to_numpy(), arrow_sets),
                "quiver HTTP": (lambda k: http.read("bench", k).to_numpy(), arrow_sets),
                "quiver Flight": (lambda k: flight.read("bench", k).to_numpy(), arrow_sets),
                "redis MGET": (redis_read, str_sets),
            }
            for label, (read, sets) in systems.items():
                if expected is not None:
                    np.testing.assert_array_equal(read(sets[0]), expected)
                times = measure(read, sets)
                results[label] = {"p50_us": float(np.percentile(times, 50)),
                                  "p99_us": float(np.percentile(times, 99)),
                                  "p999_us": float(np.percentile(times, 99.9)),
                                  "mean_us": float(times.mean())}
                print(f"  measured {label}", flush=True)
        finally:
            redis_process.terminate()
            redis_process.wait()
            server.stop()
    baseline = results["redis MGET"]["p50_us"]
    print(f"\n{'system':<18}{'p50 us':>10}{'p99 us':>10}{'p99.9 us':>10}{'mean us':>10}"
          f"{'redis p50 / p50':>17}")
    for label, r in results.items():
        print(f"{label:<18}{r['p50_us']:>10.1f}{r['p99_us']:>10.1f}{r['p999_us']:>10.1f}"
              f"{r['mean_us']:>10.1f}{baseline / r['p50_us']:>16.2f}x")
    if out := os.environ.get("BENCH_JSON"):
        pathlib.Path(out).write_text(json.dumps({"rows": ROWS, "keys": KEYS, "columns": COLUMNS,
                                                 "iterations": ITERATIONS, "results": results},
                                                indent=2))


if __name__ == "__main__":
    main()
