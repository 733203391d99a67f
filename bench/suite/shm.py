"""Shared-memory readers against quiverd over HTTP and the embedded engine: `make bench-shm`
(docs/benchmarks.md "Shared-memory readers", docs/shm.md).

One quiverd holds two tables: float32x10 (BENCH_ROWS rows, default 10,000,000; string keys,
10 float32 columns) and float32x200 (BENCH_WIDE_ROWS rows, default 1,000,000; one
fixed_size_list<float32, 200>). This process reads them
  shm hot     db.table(...): rows.get(key, out=row) and rows.read_into(keys, matrix) into NumPy
              buffers allocated once (the 1000 keys as a list of str, and as a NumPy bytes
              array made once);
  shm         db.read() of the shm backend (Arrow, as every backend answers), then to_numpy();
  HTTP        db.read() of the HTTP backend, then to_numpy();
  embedded    db.read() of quiver.open() holding the same float32x10 rows, then to_numpy();
for 1 random key and for 1000 random keys. Each call is timed alone (time.perf_counter_ns; the
clock's own cost, `clock_ns`, is in every figure and reported apart). Samples: BENCH_SAMPLES
(default 200,000) single-key calls and BENCH_BATCH_SAMPLES (default 20,000) 1000-key calls per
system, fewer for HTTP (BENCH_HTTP_SAMPLES, 20,000 / 2,000). Writes bench/results/shm-<UTC>/
results.json and results.md.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

import quiver  # noqa: E402
from common import Dataset  # noqa: E402
from quiverd import Server  # noqa: E402

NARROW = Dataset("float32x10", 10, embedding=False)
WIDE = Dataset("float32x200", 200, embedding=True)
CHUNK = 250_000


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def load(db: quiver.Client, dataset: Dataset, rows: int) -> float:
    db.create_table(dataset.name, dataset.schema, key="id")
    began = time.perf_counter()
    for start in range(0, rows, CHUNK):
        block = dataset.block(np.arange(start, min(rows, start + CHUNK)))
        db.write(dataset.name, dataset.arrow_table(start, block))
    return time.perf_counter() - began


def keys_of(rng: np.random.Generator, rows: int, size: int, sets: int) -> list[list[str]]:
    return [[str(i) for i in rng.integers(0, rows, size)] for _ in range(sets)]


def clock_ns() -> float:
    clock = time.perf_counter_ns
    samples = np.empty(100_000)
    for i in range(len(samples)):
        began = clock()
        samples[i] = clock() - began
    return float(np.median(samples))


def timed(call, key_sets: list, samples: int, warmup: int = 1000) -> dict:
    """Per-call microseconds of `samples` calls of call(keys) over the key sets."""
    for i in range(warmup):
        call(key_sets[i % len(key_sets)])
    out = np.empty(samples)
    clock = time.perf_counter_ns
    count = len(key_sets)
    for i in range(samples):
        keys = key_sets[i % count]
        began = clock()
        call(keys)
        out[i] = clock() - began
    out /= 1000
    return {"p50_us": float(np.percentile(out, 50)), "p99_us": float(np.percentile(out, 99)),
            "p999_us": float(np.percentile(out, 99.9)), "mean_us": float(out.mean()),
            "samples": samples}


def check(matrix: np.ndarray, dataset: Dataset, keys: list[str]) -> None:
    want = dataset.block(np.array([int(k) for k in keys]))
    if not np.array_equal(matrix, want):
        raise SystemExit(f"wrong answer for {dataset.name}: {matrix[:1]} != {want[:1]}")


def main() -> None:
    rows = env_int("BENCH_ROWS", 10_000_000)
    wide_rows = env_int("BENCH_WIDE_ROWS", min(rows, 1_000_000))
    samples = env_int("BENCH_SAMPLES", 200_000)
    batch_samples = env_int("BENCH_BATCH_SAMPLES", 20_000)
    http_samples = env_int("BENCH_HTTP_SAMPLES", 20_000)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")
    out_dir = pathlib.Path(os.environ.get("BENCH_OUT", ROOT / "bench" / "results" / f"shm-{stamp}"))
    results: dict = {"rows": rows, "wide_rows": wide_rows, "machine": platform.platform(),
                     "cpus": os.cpu_count(), "figures": {}}
    figures = results["figures"]
    rng = np.random.default_rng(7)
    single = keys_of(rng, rows, 1, 4096)
    single_keys = [k[0] for k in single]
    batches = keys_of(rng, rows, 1000, 256)
    wide_single = [k[0] for k in keys_of(rng, wide_rows, 1, 4096)]
    with tempfile.TemporaryDirectory(prefix="quiver-bench-shm-") as tmp:
        server = Server(pathlib.Path(tmp))
        try:
            writer = quiver.connect(server.flight_url)
            results["load_seconds"] = {NARROW.name: load(writer, NARROW, rows),
                                       WIDE.name: load(writer, WIDE, wide_rows)}
            print(f"loaded {rows:,} + {wide_rows:,} rows", flush=True)
            shm = quiver.connect(f"shm://{server.data_dir}")
            http = quiver.connect(server.url)
            hot = shm.table(NARROW.name)
            wide = shm.table(WIDE.name)
            row = np.empty(hot.width, dtype=hot.dtype)
            wide_row = np.empty(wide.width, dtype=wide.dtype)
            matrix = np.empty((1000, hot.width), dtype=hot.dtype)
            found = np.empty(1000, dtype=bool)
            check(hot.get(single_keys[0])[None, :], NARROW, single_keys[:1])
            hot.read_into(batches[0], matrix, found)
            check(matrix, NARROW, batches[0])
            check(shm.read(NARROW.name, batches[1]).to_numpy(), NARROW, batches[1])
            results["clock_ns"] = clock_ns()
            figures["shm hot, 1 key x 10 float32"] = timed(
                lambda key: hot.get(key, row), single_keys, samples)
            figures["shm hot, 1 key x 200 float32"] = timed(
                lambda key: wide.get(key, wide_row), wide_single, samples)
            figures["shm hot, 1000 keys x 10 float32 (list of str)"] = timed(
                lambda keys: hot.read_into(keys, matrix, found), batches, batch_samples)
            byte_batches = [np.array(keys, dtype="S") for keys in batches]
            figures["shm hot, 1000 keys x 10 float32 (NumPy bytes)"] = timed(
                lambda keys: hot.read_into(keys, matrix, found), byte_batches, batch_samples)
            figures["shm read(), 1 key"] = timed(
                lambda keys: shm.read(NARROW.name, keys).to_numpy(), single, samples // 4)
            figures["shm read(), 1000 keys"] = timed(
                lambda keys: shm.read(NARROW.name, keys).to_numpy(), batches, batch_samples)
            figures["HTTP read(), 1 key"] = timed(
                lambda keys: http.read(NARROW.name, keys).to_numpy(), single, http_samples)
            figures["HTTP read(), 1000 keys"] = timed(
                lambda keys: http.read(NARROW.name, keys).to_numpy(), batches,
                max(1000, http_samples // 10))
            print("shm and HTTP measured", flush=True)
        finally:
            server.stop()
    embedded = quiver.open()
    load(embedded, NARROW, rows)
    check(embedded.read(NARROW.name, batches[1]).to_numpy(), NARROW, batches[1])
    figures["embedded read(), 1 key"] = timed(
        lambda keys: embedded.read(NARROW.name, keys).to_numpy(), single, samples // 4)
    figures["embedded read(), 1000 keys"] = timed(
        lambda keys: embedded.read(NARROW.name, keys).to_numpy(), batches, batch_samples)
    embedded.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    lines = [f"# Shared-memory readers ({rows:,} rows x 10 float32; {wide_rows:,} x 200)", "",
             f"Clock cost per timed call: {results['clock_ns']:.0f} ns (included below).", "",
             "| read | p50 µs | p99 µs | p99.9 µs | samples |", "|---|---:|---:|---:|---:|"]
    for name, figure in figures.items():
        lines.append(f"| {name} | {figure['p50_us']:.2f} | {figure['p99_us']:.2f} | "
                     f"{figure['p999_us']:.2f} | {figure['samples']:,} |")
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten to {out_dir}")


if __name__ == "__main__":
    main()
