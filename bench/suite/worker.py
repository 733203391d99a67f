"""One fresh client process of the suite: `python worker.py '<json spec>'`, started by run.py.

Modes (spec["mode"]):
  load        write rows 0..N-1 through one system in chunks; prints the time it took.
  latency     after a warm-up, times each scenario call by call (1000 random keys and a single
              key, each as `arrive` and as `matrix`, see clients.py); prints per-scenario
              percentiles. The embedded system loads its own table first (it lives here).
  throughput  warms up, prints "ready", waits for a line on stdin (run.py releases every client
              of a level at once), then calls `arrive` with 1000 random keys back to back for
              spec["seconds"]; prints its count and every latency.
The last line of stdout is the JSON answer.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from clients import SYSTEMS
from common import BATCH_KEYS, DATASETS, key_sets, percentiles

LOAD_CHUNK = 250_000


def load(client, dataset, rows: int) -> float:
    """Seconds spent in client.load for all rows; making each chunk's features is not timed."""
    seconds = 0.0
    for start in range(0, rows, LOAD_CHUNK):
        block = dataset.block(np.arange(start, min(rows, start + LOAD_CHUNK)))
        began = time.perf_counter()
        client.load(start, block)
        seconds += time.perf_counter() - began
    return seconds


def check(client, dataset, ids: np.ndarray, keys: list[str]) -> None:
    """Every system's answer must be the dataset's values, bit for bit, before it is timed."""
    got = client.matrix(keys)
    want = dataset.block(ids)
    if got.shape != want.shape or not np.array_equal(got, want):
        raise SystemExit(f"wrong answer: got {got.shape} {got[:1]}, want {want.shape} {want[:1]}")


MIN_SAMPLES = 100


def time_calls(call, sets: list[list[str]], warmup: int, iterations: int,
               max_seconds: float = float("inf")) -> np.ndarray:
    """Per-call microseconds of `iterations` calls after `warmup` untimed ones; stops early
    after max_seconds once it has MIN_SAMPLES (a slow system then has fewer samples)."""
    for i in range(warmup):
        call(sets[i % len(sets)])
    samples = np.empty(iterations)
    clock = time.perf_counter_ns
    deadline = clock() + max_seconds * 1e9
    for i in range(iterations):
        keys = sets[i % len(sets)]
        began = clock()
        call(keys)
        ended = clock()
        samples[i] = (ended - began) / 1000
        if ended > deadline and i + 1 >= MIN_SAMPLES:
            return samples[:i + 1]
    return samples


def latency(client, dataset, spec) -> dict:
    result = {}
    for scenario, size in (("batch", BATCH_KEYS), ("single", 1)):
        sets = key_sets(spec["seed"], spec["rows"], size)
        check(client, dataset, *sets[0])
        keys = [k for _, k in sets]
        for form in ("arrive", "matrix"):
            samples = time_calls(getattr(client, form), keys, spec["warmup"], spec["iterations"],
                                 spec["max_seconds"])
            result[f"{scenario}_{form}"] = percentiles(samples)
    return result


def throughput(client, spec) -> dict:
    keys = [k for _, k in key_sets(spec["seed"], spec["rows"], BATCH_KEYS)]
    time_calls(client.arrive, keys, spec["warmup"], 0)
    print("ready", flush=True)
    sys.stdin.readline()
    samples = []
    clock = time.perf_counter_ns
    began = clock()
    deadline = began + int(spec["seconds"] * 1e9)
    i = 0
    now = began
    while now < deadline:
        start = now
        client.arrive(keys[i % len(keys)])
        now = clock()
        samples.append((now - start) / 1000)
        i += 1
    return {"requests": i, "seconds": (now - began) / 1e9, "latencies_us": samples}


def main() -> None:
    spec = json.loads(sys.argv[1])
    dataset = DATASETS[spec["dataset"]]
    client = SYSTEMS[spec["system"]](dataset, spec["endpoints"], spec.get("table", "bench"))
    try:
        if spec["mode"] == "load":
            if spec.get("create"):
                client.create()
            answer = {"seconds": load(client, dataset, spec["rows"])}
        elif spec["mode"] == "latency":
            answer = {}
            if spec["system"] == "quiver embedded":
                client.create()
                answer["load_seconds"] = load(client, dataset, spec["rows"])
            answer["scenarios"] = latency(client, dataset, spec)
        elif spec["mode"] == "throughput":
            answer = throughput(client, spec)
        else:
            raise SystemExit(f"unknown mode {spec['mode']!r}")
    finally:
        client.close()
    answer["pid"] = os.getpid()
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
