"""The change history (--history) and point-in-time reads: `make bench-history`
(docs/offline.md, docs/benchmarks.md "Change history").

A local S3-compatible server (moto, tests/s3server.py) on loopback. Two quiverd, one with
--history (on moto, --history-interval 1) and one without, each take the same writes:
BENCH_KEYS keys (default 1,000,000; int64) × 10 float32, written BENCH_VERSIONS times (default 5)
in batches of 10,000 rows through the Python client (HTTP). Reported:
  writes      rows/s acknowledged with and without the history (same run, same data);
  history     from the last acknowledged write until /metrics shows every change in the history
              (its lag behind the writes), the rows and bytes it wrote, and rows/s over the whole
              run (first write to caught up);
  point-in-time  quiver.offline.point_in_time over that history for BENCH_ENTITIES entity rows
              (default 100,000: random keys, random times within the run), by event time and by
              applied time: seconds, median of 3 (each reads the dataset from moto afresh).
Writes bench/results/history-<UTC>/results.json and results.md.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402

import quiver  # noqa: E402
import quiver.offline  # noqa: E402
from common import save_results  # noqa: E402
from quiverd import Server  # noqa: E402
from s3server import S3Server, s3_env  # noqa: E402

BATCH = 10_000


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def batches(keys: int, versions: int):
    rng = np.random.default_rng(1)
    for version in range(versions):
        for start in range(0, keys, BATCH):
            ids = np.arange(start, min(keys, start + BATCH), dtype=np.int64)
            columns = {"id": ids}
            for c in range(10):
                columns[f"f{c}"] = rng.random(len(ids), dtype=np.float32) + version
            yield pa.table(columns)


def write_all(server: Server, keys: int, versions: int) -> tuple[float, float, float]:
    """(seconds, first write's time, last write's time) of every write, acknowledged."""
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False)]
                       + [pa.field(f"f{c}", pa.float32()) for c in range(10)])
    with quiver.connect(server.url) as db:
        db.create_table("t", schema, key="id")
        began = time.time()
        for table in batches(keys, versions):
            db.write("t", table)
        ended = time.time()
    return ended - began, began, ended


def main() -> None:
    keys = env_int("BENCH_KEYS", 1_000_000)
    versions = env_int("BENCH_VERSIONS", 5)
    entities = env_int("BENCH_ENTITIES", 100_000)
    os.environ.update({k: v for k, v in s3_env().items() if k.startswith("AWS_")})
    work = pathlib.Path(tempfile.mkdtemp(prefix="quiver-bench-history-"))
    rows = keys * versions
    results: dict = {"keys": keys, "versions": versions, "rows": rows, "entities": entities,
                     "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                     "date": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    with S3Server(work / "moto.log") as s3:
        uri = s3.uri("quiver-history/bench")
        plain = Server(work, "--shm-socket", "off")
        seconds, _, _ = write_all(plain, keys, versions)
        plain.stop()
        results["writes_without"] = rows / seconds
        server = Server(work, "--history", uri, "--history-interval", "1", "--shm-socket", "off")
        seconds, began, ended = write_all(server, keys, versions)
        results["writes_with"] = rows / seconds
        while True:
            m = server.metrics()
            if m["quiver_history_lsn"] >= m["quiver_wal_last_lsn"]:
                break
            time.sleep(0.02)
        caught_up = time.time()
        results["history"] = {"lag_after_last_write_s": caught_up - ended,
                              "rows": m["quiver_history_rows_total"],
                              "bytes": m["quiver_history_bytes_total"],
                              "files": m["quiver_history_files_total"],
                              "rows_per_s": m["quiver_history_rows_total"] / (caught_up - began)}
        server.stop()
        rng = np.random.default_rng(2)
        frame = pd.DataFrame({
            "id": rng.integers(0, keys, entities),
            "event_timestamp": pd.to_datetime(rng.uniform(began, caught_up, entities), unit="s",
                                              utc=True)})
        results["point_in_time"] = {}
        for by in ("event_time", "applied"):
            samples = []
            for _ in range(3):
                start = time.perf_counter()
                answer = quiver.offline.point_in_time(uri, "t", frame, by=by)
                samples.append(time.perf_counter() - start)
            assert len(answer) == entities
            results["point_in_time"][by] = samples
            print(f"point_in_time by {by}: median {statistics.median(samples):.2f} s", flush=True)
    h = results["history"]
    lines = [
        f"# Change history ({keys:,} keys × 10 float32, written {versions} times: {rows:,} rows)",
        "", f"Machine: {results['machine']}. Object store: moto on loopback.", "",
        "| | value |", "|---|---|",
        f"| writes acknowledged, without --history | {results['writes_without']:,.0f} rows/s |",
        f"| writes acknowledged, with --history | {results['writes_with']:,.0f} rows/s |",
        f"| history caught up after the last write | {h['lag_after_last_write_s']:.2f} s |",
        f"| history written | {h['rows']:,.0f} rows, {h['bytes'] / 1e6:.1f} MB, "
        f"{h['files']:.0f} files; {h['rows_per_s']:,.0f} rows/s over the run |",
    ]
    for by, samples in results["point_in_time"].items():
        lines.append(f"| point_in_time, {entities:,} entity rows, by {by} | "
                     f"{statistics.median(samples):.2f} s (median of 3) |")
    save_results("history", results, lines)


if __name__ == "__main__":
    main()
