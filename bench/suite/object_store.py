"""Object-store backups and stateless bootstrap: `make bench-object-store` (docs/object-storage.md,
docs/benchmarks.md "Object storage").

A local S3-compatible server (moto, tests/s3server.py) on loopback. A leader quiverd with
--object-store holds BENCH_ROWS rows (default 10,000,000; 8-character string keys, 10 float32
columns, written through the Python client in batches of 250,000), takes a snapshot, then writes
BENCH_LOG_ROWS more (default 1,000,000, new values for existing keys) that only the log holds. Reported:
  upload      the snapshot and log segments uploaded after the snapshot: bytes, seconds, MB/s
              (from the moment the snapshot returns until /metrics shows every change uploaded);
  bootstrap   the leader killed (SIGKILL), then quiverd started on an empty data directory with the
              same --object-store, BENCH_RUNS times (default 3), each from process start to
              /health answering: the total, and its split from quiverd's log — download (the
              restore), load (snapshots), replay (the log), the rest (start-up, listeners);
  staleness   a leader and a --follow node on a fresh prefix, for each pair of intervals in
              BENCH_FOLLOW_INTERVALS (default "1/1,0.1/0.1": --upload-interval/--follow-interval):
              30 one-row writes, one after another, each timed from its acknowledgement on the
              leader until the follower's HTTP fetch returns it.
Writes bench/results/object-store-<UTC>/results.json and results.md.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import re
import statistics
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import requests  # noqa: E402

import quiver  # noqa: E402
from common import Dataset, save_results  # noqa: E402
from quiverd import Server  # noqa: E402
from s3server import S3Server, s3_env  # noqa: E402

DATASET = Dataset("float32x10", 10, embedding=False)
CHUNK = 250_000


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def wait_uploaded(server: Server) -> dict[str, float]:
    while True:
        m = server.metrics()
        if m["quiver_object_store_uploaded_lsn"] >= m["quiver_wal_last_lsn"]:
            return m
        time.sleep(0.02)


def log_field(log: str, message: str, field: str) -> float:
    line = next(line for line in log.splitlines() if f'msg="{message}"' in line
                or f"msg={message} " in line)
    return float(re.search(rf" {field}=([0-9.]+)", line).group(1))


def staleness(s3: S3Server, work: pathlib.Path, upload: str, follow: str) -> list[float]:
    schema = {"key": "id", "columns": {"id": {"dtype": "utf8"}, "v": {"dtype": "int64"}}}
    uri = s3.uri(f"quiver-stale-{upload}-{follow}/p")
    leader = Server(work, "--object-store", uri, "--upload-interval", upload, "--shm-socket", "off")
    requests.put(f"{leader.url}/api/v1/table/t", json=schema, timeout=10)
    requests.put(f"{leader.url}/api/v1/table/t/write", json={"columns": {"id": ["k"], "v": [0]}},
                 timeout=10)
    wait_uploaded(leader)
    follower = Server(work, "--follow", uri, "--follow-interval", follow, "--shm-socket", "off",
                      data_dir=work / f"follower-{upload}-{follow}")
    samples = []
    for i in range(1, 31):
        requests.put(f"{leader.url}/api/v1/table/t/write",
                     json={"columns": {"id": ["k"], "v": [i]}}, timeout=10)
        began = time.perf_counter()
        while requests.post(f"{follower.url}/api/v1/table/t/fetch", json={"keys": ["k"]},
                            timeout=10).json()["columns"]["v"][0] != i:
            time.sleep(0.005)
        samples.append(time.perf_counter() - began)
    for server in (follower, leader):
        server.stop()
    return sorted(samples)


def main() -> None:
    rows = env_int("BENCH_ROWS", 10_000_000)
    log_rows = env_int("BENCH_LOG_ROWS", 1_000_000)
    runs = env_int("BENCH_RUNS", 3)
    os.environ.update({k: v for k, v in s3_env().items() if k.startswith("AWS_")})
    work = pathlib.Path(tempfile.mkdtemp(prefix="quiver-bench-s3-"))
    results: dict = {"rows": rows, "log_rows": log_rows, "runs": runs,
                     "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                     "date": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    with S3Server(work / "moto.log") as s3:
        uri = s3.uri("quiver-bench/node")
        flags = ("--object-store", uri, "--upload-interval", "1", "--object-store-lease-seconds",
                 "1", "--snapshot-wal-bytes", "0", "--shm-socket", "off")
        leader = Server(work, *flags)
        with quiver.connect(leader.url) as db:
            db.create_table(DATASET.name, DATASET.schema, key="id")
            began = time.perf_counter()
            for start in range(0, rows, CHUNK):
                block = DATASET.block(np.arange(start, min(rows, start + CHUNK)))
                db.write(DATASET.name, DATASET.arrow_table(start, block))
            results["load_seconds"] = time.perf_counter() - began
            before = wait_uploaded(leader)
            db.snapshot()
            began = time.perf_counter()
            while True:  # the manifest naming the snapshot
                after = leader.metrics()
                if (after["quiver_object_store_manifests_total"]
                        > before["quiver_object_store_manifests_total"]):
                    break
                time.sleep(0.01)
            seconds = time.perf_counter() - began
            sent = (after["quiver_object_store_uploaded_bytes_total"]
                    - before["quiver_object_store_uploaded_bytes_total"])
            results["upload"] = {"bytes": sent, "seconds": seconds, "mb_per_s": sent / seconds / 1e6}
            for start in range(0, log_rows, CHUNK):
                block = DATASET.block(np.arange(start, min(log_rows, start + CHUNK)) + 1)
                db.write(DATASET.name, DATASET.arrow_table(start, block))
            wait_uploaded(leader)
            probe = [str(i) for i in (0, min(log_rows, rows) - 1, rows // 2, rows - 1)]
            expected = db.read(DATASET.name, probe).to_arrow()
        leader.process.kill()
        leader.process.wait()
        bootstraps = []
        for run in range(runs):
            time.sleep(1.2)  # the killed leader's lease lapses
            began = time.perf_counter()
            node = Server(work, *flags, data_dir=work / f"fresh-{run}", start_timeout=120)
            total = time.perf_counter() - began
            log = node.log()
            with quiver.connect(node.url) as db:
                assert db.read(DATASET.name, probe).to_arrow().equals(expected)
            split = {"total": total,
                     "download": log_field(log, "restored from the object store", "download_s"),
                     "bytes": log_field(log, "restored from the object store", "bytes"),
                     "load": log_field(log, "recovered", "snapshot_ms") / 1000,
                     "replay": log_field(log, "recovered", "wal_ms") / 1000}
            split["rest"] = total - split["download"] - split["load"] - split["replay"]
            bootstraps.append(split)
            print(f"bootstrap {run + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in split.items()
                                                      if k != "bytes"), flush=True)
            node.process.kill()
            node.process.wait()
        results["bootstrap"] = bootstraps
        results["staleness"] = {}
        for pair in os.environ.get("BENCH_FOLLOW_INTERVALS", "1/1,0.1/0.1").split(","):
            upload, follow = pair.split("/")
            samples = staleness(s3, work, upload, follow)
            results["staleness"][pair] = samples
            print(f"staleness {pair}: p50 {statistics.median(samples):.2f} s, "
                  f"max {samples[-1]:.2f} s", flush=True)
    median = {k: statistics.median(b[k] for b in bootstraps) for k in bootstraps[0]}
    up = results["upload"]
    lines = [
        f"# Object storage ({rows:,} rows × 10 float32, {log_rows:,} rows more in the log)", "",
        f"Machine: {results['machine']}. Local S3 server: moto on loopback.", "",
        f"Upload after a snapshot: {up['bytes'] / 1e6:.0f} MB in {up['seconds']:.2f} s "
        f"({up['mb_per_s']:.0f} MB/s).", "",
        "| Bootstrap (empty data directory) | total s | download s | load s | replay s | rest s |",
        "|---|---|---|---|---|---|",
    ]
    for i, b in enumerate(bootstraps):
        lines.append(f"| run {i + 1} ({b['bytes'] / 1e6:.0f} MB) | {b['total']:.2f} | "
                     f"{b['download']:.2f} | {b['load']:.2f} | {b['replay']:.2f} | {b['rest']:.2f} |")
    lines.append(f"| **median** | **{median['total']:.2f}** | {median['download']:.2f} | "
                 f"{median['load']:.2f} | {median['replay']:.2f} | {median['rest']:.2f} |")
    lines += ["", "| Follower staleness (--upload-interval / --follow-interval) | p50 s | p90 s | max s |",
              "|---|---|---|---|"]
    for pair, samples in results["staleness"].items():
        lines.append(f"| {pair} | {statistics.median(samples):.2f} | {samples[26]:.2f} | "
                     f"{samples[-1]:.2f} |")
    save_results("object-store", results, lines)


if __name__ == "__main__":
    main()
