"""An online schema change on a large table: `make bench-schema-change` (docs/schema.md,
docs/benchmarks.md "Schema changes").

One quiverd (data directory, no shared-memory socket) holds BENCH_ROWS rows (default 10,000,000;
int64 key × 10 float32, written over HTTP in batches of 100,000). A reader thread fetches 1,000
random keys (Arrow IPC over HTTP, the Python client) back to back from 2 s before the change until
2 s after it. The change: PATCH adding a nullable float32 column. Reported:
  change      seconds until the PATCH is answered;
  memory      the table's bytes (GET /api/v1/table/t), quiverd's RSS before the change and its
              peak RSS during it (VmHWM, reset just before), and the peak over the RSS before;
  reads       p50 / p99 / max of the 1,000-key fetches before and during the change.
Writes bench/results/schema-change-<UTC>/results.json and results.md.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import requests  # noqa: E402

import quiver  # noqa: E402
from common import percentiles, save_results  # noqa: E402
from quiverd import Server, peak_rss_bytes, rss_bytes  # noqa: E402

BATCH = 100_000


def load(server: Server, rows: int) -> None:
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False)]
                       + [pa.field(f"f{c}", pa.float32()) for c in range(10)])
    rng = np.random.default_rng(1)
    with quiver.connect(server.url) as db:
        db.create_table("t", schema, key="id")
        for start in range(0, rows, BATCH):
            ids = np.arange(start, min(rows, start + BATCH), dtype=np.int64)
            db.write("t", pa.table({"id": ids, **{f"f{c}": rng.random(len(ids), dtype=np.float32)
                                                  for c in range(10)}}))


def main() -> None:
    rows = int(os.environ.get("BENCH_ROWS", 10_000_000))
    work = pathlib.Path(tempfile.mkdtemp(prefix="quiver-bench-schema-"))
    server = Server(work, "--shm-socket", "off", start_timeout=60)
    load(server, rows)
    info = requests.get(f"{server.url}/api/v1/table/t").json()
    pid = server.process.pid
    rss_before = rss_bytes(pid)

    samples: list[tuple[float, float]] = []  # (start, seconds)
    stop = threading.Event()

    def reader() -> None:
        rng = np.random.default_rng(2)
        with quiver.connect(server.url) as db:
            while not stop.is_set():
                keys = rng.integers(0, rows, 1000)
                began = time.perf_counter()
                db.read("t", keys)
                samples.append((began, time.perf_counter() - began))

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(2)
    pathlib.Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the RSS now
    began = time.perf_counter()
    response = requests.patch(f"{server.url}/api/v1/table/t",
                              json={"add": {"g": {"dtype": "float32"}}})
    ended = time.perf_counter()
    peak = peak_rss_bytes(pid)
    time.sleep(2)
    stop.set()
    thread.join()
    assert response.status_code == 200, response.text
    after = requests.get(f"{server.url}/api/v1/table/t").json()
    assert after["rows"] == rows
    server.stop()

    before_us = np.array([s * 1e6 for t, s in samples if t + s < began])
    during_us = np.array([s * 1e6 for t, s in samples if t < ended and t + s > began])
    results = {
        "rows": rows, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "change_seconds": ended - began,
        "table_bytes": info["bytes"], "table_bytes_after": after["bytes"],
        "rss_before": rss_before, "peak_rss_during": peak, "peak_over_rss": peak / rss_before,
        "reads_before": percentiles(before_us),
        # A change faster than one read overlaps none: the read after it stands in.
        "reads_during": percentiles(during_us if during_us.size else
                                    np.array([s * 1e6 for t, s in samples if t >= ended][:1])),
    }
    results["reads_during_max_us"] = results["reads_during"]["p999_us"] if not during_us.size \
        else float(during_us.max())
    b, d = results["reads_before"], results["reads_during"]
    lines = [
        f"# Online schema change: add a nullable float32 column to {rows:,} rows "
        "(int64 key × 10 float32)", "",
        f"Machine: {results['machine']}.", "",
        "| | value |", "|---|---|",
        f"| change answered after | {results['change_seconds']:.2f} s |",
        f"| table bytes before / after | {info['bytes'] / 2**20:,.0f} MiB / "
        f"{after['bytes'] / 2**20:,.0f} MiB |",
        f"| quiverd RSS before / peak during | {rss_before / 2**20:,.0f} MiB / "
        f"{peak / 2**20:,.0f} MiB ({results['peak_over_rss']:.2f}×) |",
        f"| 1,000-key fetches before: p50 / p99 | {b['p50_us'] / 1000:.2f} ms / "
        f"{b['p99_us'] / 1000:.2f} ms ({b['samples']} reads) |",
        f"| 1,000-key fetches during: p50 / p99 / max | {d['p50_us'] / 1000:.2f} ms / "
        f"{d['p99_us'] / 1000:.2f} ms / {results['reads_during_max_us'] / 1000:.2f} ms "
        f"({d['samples']} reads) |",
    ]
    save_results("schema-change", results, lines)


if __name__ == "__main__":
    main()
