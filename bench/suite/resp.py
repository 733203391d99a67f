"""quiverd's Redis protocol against Debian's redis-server, one command: `make bench-resp`
(docs/benchmarks.md, "Redis protocol").

Runs redis-benchmark (Debian's redis-tools) against both servers in the same run, alternating
which goes first: SET, GET and HSET (`-t set`, `-t get`, `-t hset`, one run each, on the same
server) and MGET of 10 keys (a custom command:
redis-benchmark has no mget test), 50 clients, random keys among 1,000,000 (`-r`), pipelines of
1 and 16, with one server thread each (quiverd --resp-threads 1; redis-server's default) and
then two (quiverd --resp-threads 2; redis-server --io-threads 2 --io-threads-do-reads yes).
Each in two modes: "memory" (quiverd --kv-memory-only; redis-server without persistence) and
"durable" (quiverd's default, every change in the write-ahead log, fsync once a second;
redis-server --appendonly yes --appendfsync everysec). Then memory per key: 1,000,000 keys of
16-byte values loaded into fresh servers (memory mode), resident memory growth and used_memory
per key; and per hash field: 100,000 hashes of 10 fields (`f0`..`f9`, 16-byte values), packed
and as tables. Each test also reports the server's user and system CPU time per request (from
/proc). Last, the ceiling: GET at each pipeline depth against noop_resp_server (bench/), a server
that does no work, with the client's share of a CPU. Writes
bench/results/resp-<UTC timestamp>/results.json and results.md.

Environment (defaults in brackets):
  BENCH_REQUESTS [1000000]   requests per redis-benchmark test
  BENCH_RUNS [3]             runs per configuration (figures: medians across runs)
  BENCH_KEYS [1000000]       keys for the memory measurement and redis-benchmark's -r
  BENCH_THREADS [1,2]        server threads
  BENCH_PIPELINES [1,16]
  BENCH_MODES [memory,durable]
  BENCH_OUT [bench/results/resp-<timestamp>]
  QUIVERD [build/quiverd]
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import pathlib
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import redis  # noqa: E402

from run import ROOT, RedisServer, machine, rss_bytes, versions  # noqa: E402
from quiverd import QUIVERD, Server, free_port  # noqa: E402

SYSTEMS = ("quiverd", "redis-server")
MGET_KEYS = 10
HASH_FIELDS = 10  # fields per hash in the memory measurement
# Hash encodings measured: the value of hash-max-listpack-entries set first ("": the default).
HASH_ENCODINGS = {"packed": "", "table": "0"}


def settings() -> dict:
    def ints(name: str, default: str) -> list[int]:
        return [int(part) for part in os.environ.get(name, default).split(",") if part]

    return {"requests": int(os.environ.get("BENCH_REQUESTS", "1000000")),
            "runs": int(os.environ.get("BENCH_RUNS", "3")),
            "keys": int(os.environ.get("BENCH_KEYS", "1000000")),
            "threads": ints("BENCH_THREADS", "1,2"), "pipelines": ints("BENCH_PIPELINES", "1,16"),
            "modes": [m for m in os.environ.get("BENCH_MODES", "memory,durable").split(",") if m],
            "clients": 50}


def start(system: str, threads: int, directory: pathlib.Path, mode: str = "memory"):
    """(port, pid, stop) of a fresh server with `threads` threads serving commands; `mode`:
    "memory" (no persistence) or "durable" (a log fsynced once a second)."""
    directory.mkdir(parents=True, exist_ok=True)
    if system == "quiverd":
        memory = ("--kv-memory-only",) if mode == "memory" else ()
        server = Server(directory, "--resp-threads", str(threads), "--log-level", "warn", *memory)
        return server.resp_port, server.process.pid, server.stop
    extra = ("--io-threads", str(threads), "--io-threads-do-reads", "yes") if threads > 1 else ()
    if mode == "durable":
        extra += ("--appendonly", "yes", "--appendfsync", "everysec")
    server = RedisServer(directory / f"redis-{time.monotonic_ns()}", *extra)
    return server.port, server.process.pid, server.stop


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds a process (all its threads) has used."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick  # utime, stime


def redis_benchmark(port: int, pid: int, config: dict, pipeline: int,
                    *test: str) -> dict[str, dict]:
    """{test name: {rps, p50_ms, p99_ms, ..., server CPU µs per request}} from one
    redis-benchmark --csv run of one test against the server `pid`."""
    command = ["redis-benchmark", "-p", str(port), "-n", str(config["requests"]),
               "-c", str(config["clients"]), "-P", str(pipeline), "-r", str(config["keys"]),
               "--csv", *test]
    user, system = cpu_seconds(pid)
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=True)
    user_after, system_after = cpu_seconds(pid)
    cpu = {"user_us_per_request": (user_after - user) * 1e6 / config["requests"],
           "system_us_per_request": (system_after - system) * 1e6 / config["requests"]}
    figures = {}
    for row in csv.DictReader(io.StringIO(done.stdout)):
        name = "MGET (10 keys)" if row["test"].startswith("MGET") else row["test"]
        figures[name] = {"rps": float(row["rps"]), "avg_ms": float(row["avg_latency_ms"]),
                         "p50_ms": float(row["p50_latency_ms"]),
                         "p95_ms": float(row["p95_latency_ms"]),
                         "p99_ms": float(row["p99_latency_ms"]),
                         "max_ms": float(row["max_latency_ms"]), **cpu}
    if len(figures) > 1:
        raise SystemExit("one redis-benchmark test at a time (its CPU time is the server's)")
    if not figures:
        raise SystemExit(f"redis-benchmark printed nothing: {done.stderr}")
    return figures


def throughput(config: dict, tmp: pathlib.Path, log) -> dict:
    """{mode: {threads: {pipeline: {system: {test: figures (medians) + runs}}}}}."""
    return {mode: throughput_of(mode, config, tmp, log) for mode in config["modes"]}


def throughput_of(mode: str, config: dict, tmp: pathlib.Path, log) -> dict:
    mget = ["MGET", *["key:__rand_int__"] * MGET_KEYS]
    out: dict = {}
    for threads in config["threads"]:
        for pipeline in config["pipelines"]:
            runs: dict = {system: [] for system in SYSTEMS}
            for run in range(config["runs"]):
                order = SYSTEMS if run % 2 == 0 else SYSTEMS[::-1]
                for system in order:
                    port, pid, stop = start(system, threads,
                                            tmp / f"{system}-{mode}-{threads}-{pipeline}", mode)
                    try:
                        figures = {}
                        for test in (("-t", "set"), ("-t", "get"), ("-t", "hset"), mget):
                            figures.update(redis_benchmark(port, pid, config, pipeline, *test))
                    finally:
                        stop()
                    runs[system].append(figures)
                    log(f"{mode} threads {threads} -P {pipeline} run {run + 1} {system}: " + ", ".join(
                        f"{test} {f['rps']:,.0f}/s p99 {f['p99_ms']} ms"
                        for test, f in figures.items()))
            level = out.setdefault(str(threads), {}).setdefault(str(pipeline), {})
            for system, system_runs in runs.items():
                level[system] = {
                    test: {**{field: statistics.median(r[test][field] for r in system_runs)
                              for field in system_runs[0][test]},
                           "runs": [r[test] for r in system_runs]}
                    for test in system_runs[0]}
            for test, figures in level["quiverd"].items():
                redis_figures = level["redis-server"][test]
                figures["rps_ratio_vs_redis"] = figures["rps"] / redis_figures["rps"]
                figures["p99_ratio_vs_redis"] = figures["p99_ms"] / redis_figures["p99_ms"]
    return out


def noop_ceiling(config: dict, log) -> dict:
    """{pipeline: GET figures (medians) + the client's CPU share} against noop_resp_server, which
    answers every request with the same bulk string: no server gets more out of this machine and
    this client at that pipeline depth."""
    # Beside QUIVERD's build, or build/'s (sanitizer builds leave the benchmarks out).
    candidates = [QUIVERD.parent / "bench" / "noop_resp_server",
                  ROOT / "build" / "bench" / "noop_resp_server"]
    binary = next((c for c in candidates if c.exists()), None)
    if binary is None:
        raise SystemExit("no noop_resp_server: cmake --build build --target noop_resp_server")
    out = {}
    for pipeline in config["pipelines"]:
        runs = []
        for _ in range(config["runs"]):
            port = free_port()
            process = subprocess.Popen([str(binary), str(port)])
            try:
                deadline = time.monotonic() + 10
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
                # redis-benchmark is a waited child: its CPU time lands in RUSAGE_CHILDREN.
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                started = time.monotonic()
                figures = redis_benchmark(port, process.pid, config, pipeline, "-t", "get")["GET"]
                wall = time.monotonic() - started
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                figures["client_cpu_share"] = (after.ru_utime + after.ru_stime -
                                               before.ru_utime - before.ru_stime) / wall
            finally:
                process.kill()
                process.wait()
            runs.append(figures)
            log(f"no-op server -P {pipeline}: GET {figures['rps']:,.0f}/s p99 "
                f"{figures['p99_ms']} ms, client {figures['client_cpu_share']:.0%} of a CPU")
        out[str(pipeline)] = {field: statistics.median(r[field] for r in runs) for field in runs[0]}
    return out


def memory_growth(system: str, directory: pathlib.Path, load) -> tuple[int, int]:
    """(resident growth, used_memory growth) of a fresh server while `load(client)` runs."""
    port, pid, stop = start(system, 1, directory)
    try:
        client = redis.Redis(port=port)
        used_before = client.info("memory")["used_memory"]
        rss_before = rss_bytes(pid)
        load(client)
        time.sleep(0.5)
        growth = (rss_bytes(pid) - rss_before, client.info("memory")["used_memory"] - used_before)
        client.close()
        return growth
    finally:
        stop()


def memory_per_key(config: dict, tmp: pathlib.Path, log) -> tuple[dict, dict]:
    """Resident-memory growth and used_memory per key for `keys` keys of 16-byte values, and per
    field for keys/10 hashes of 10 fields with 16-byte values, in each hash encoding
    (HASH_ENCODINGS: small hashes packed, as both servers do by default, or as hash tables)."""
    keys, hashes = config["keys"], max(1, config["keys"] // HASH_FIELDS)

    def strings(client) -> None:
        for first in range(0, keys, 10000):
            last = min(keys, first + 10000)
            client.mset({f"key:{i:012d}": f"{i:016d}" for i in range(first, last)})
        assert client.dbsize() == keys, client.dbsize()

    def fields(client, max_packed: str) -> None:
        if max_packed:
            client.config_set("hash-max-listpack-entries", max_packed)
        pipe = client.pipeline(transaction=False)
        for i in range(hashes):
            pipe.hset(f"hash:{i:012d}",
                      mapping={f"f{j}": f"{i * HASH_FIELDS + j:016d}" for j in range(HASH_FIELDS)})
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()
        assert client.dbsize() == hashes, client.dbsize()

    per_key, per_field = {}, {}
    for system in SYSTEMS:
        rss, used = memory_growth(system, tmp / f"{system}-memory", strings)
        per_key[system] = {"rss_bytes_per_key": rss / keys, "used_memory_bytes_per_key": used / keys}
        log(f"memory {system}: {per_key[system]['rss_bytes_per_key']:.1f} resident bytes per key, "
            f"{per_key[system]['used_memory_bytes_per_key']:.1f} used_memory bytes per key")
        for encoding, max_packed in HASH_ENCODINGS.items():
            rss, used = memory_growth(system, tmp / f"{system}-hash-memory-{encoding}",
                                      lambda client: fields(client, max_packed))
            figures = {"rss_bytes_per_field": rss / (hashes * HASH_FIELDS),
                       "used_memory_bytes_per_field": used / (hashes * HASH_FIELDS)}
            per_field.setdefault(system, {})[encoding] = figures
            log(f"memory {system}, {encoding} hashes: {figures['rss_bytes_per_field']:.1f} "
                f"resident bytes per field, {figures['used_memory_bytes_per_field']:.1f} "
                "used_memory bytes per field")
    return per_key, per_field


def table(title: str, systems: dict) -> list[str]:
    lines = [f"## {title}", "",
             "| Test | quiverd req/s | redis req/s | ratio | quiverd p50 / p99 ms | "
             "redis p50 / p99 ms | quiverd CPU µs/req user + sys | redis CPU µs/req user + sys |",
             "|---|---|---|---|---|---|---|---|"]
    for test, q in systems["quiverd"].items():
        r = systems["redis-server"][test]
        lines.append(f"| {test} | {q['rps']:,.0f} | {r['rps']:,.0f} | "
                     f"{q['rps_ratio_vs_redis']:.2f}x | {q['p50_ms']:.3f} / "
                     f"{q['p99_ms']:.3f} | {r['p50_ms']:.3f} / {r['p99_ms']:.3f} | "
                     f"{q['user_us_per_request']:.2f} + {q['system_us_per_request']:.2f} | "
                     f"{r['user_us_per_request']:.2f} + {r['system_us_per_request']:.2f} |")
    return lines + [""]


def markdown(data: dict) -> str:
    s = data["settings"]
    lines = [f"# quiverd against redis-server over RESP ({data['date']})", "",
             f"Machine: {data['machine']['cpu']}, {data['machine']['cores']} cores, "
             f"{data['machine']['virtualization']}; {data['versions']['redis_server']}.", "",
             f"Command: `{data['command']}`; each test: `redis-benchmark -n {s['requests']} "
             f"-c {s['clients']} -r {s['keys']} -P <pipeline> --csv -t set` (then get, hset) and "
             f"`... MGET key:__rand_int__ (x{MGET_KEYS})`; medians of {s['runs']} runs, fresh "
             f"servers per run, client and server on the same machine. CPU: the server "
             f"process's user and system time during the test over its requests.", ""]
    for mode, by_threads in data["throughput"].items():
        for threads, levels in by_threads.items():
            for pipeline, systems in levels.items():
                lines += table(f"{mode}: {threads} server thread(s), pipeline {pipeline}",
                               systems)
    if data.get("memory"):
        lines += [f"## Memory per key ({s['keys']:,} keys, 16-byte values)", "",
                  "| Server | resident bytes/key | used_memory bytes/key |", "|---|---|---|"]
        for system, figures in data["memory"].items():
            lines.append(f"| {system} | {figures['rss_bytes_per_key']:.1f} | "
                         f"{figures['used_memory_bytes_per_key']:.1f} |")
    if data.get("hash_memory"):
        hashes = max(1, s["keys"] // HASH_FIELDS)
        lines += ["", f"## Memory per hash field ({hashes:,} hashes of {HASH_FIELDS} fields, "
                  "16-byte values)", "",
                  "Packed: small hashes as both servers keep them by default (quiverd's packed "
                  "fields, Redis's listpack); table: with `hash-max-listpack-entries 0`.", "",
                  "| Server | encoding | resident bytes/field | used_memory bytes/field |",
                  "|---|---|---|---|"]
        for system, encodings in data["hash_memory"].items():
            for encoding, figures in encodings.items():
                lines.append(f"| {system} | {encoding} | {figures['rss_bytes_per_field']:.1f} | "
                             f"{figures['used_memory_bytes_per_field']:.1f} |")
    if data.get("noop"):
        lines += ["", "## Ceiling: a server that does no work", "",
                  "GET against `noop_resp_server` (bench/), which answers each request with the "
                  "same bulk string after one read and before one write per ready connection; "
                  "Redis's GET from the memory-mode, one-thread runs above.", "",
                  "| Pipeline | no-op req/s | no-op p50 / p99 ms | no-op server CPU µs/req user + "
                  "sys | client CPU share | redis GET req/s | no-op / redis |",
                  "|---|---|---|---|---|---|---|"]
        for pipeline, f in data["noop"].items():
            redis_get = (data["throughput"].get("memory", {}).get("1", {}).get(pipeline, {})
                         .get("redis-server", {}).get("GET", {}).get("rps"))
            lines.append(
                f"| {pipeline} | {f['rps']:,.0f} | {f['p50_ms']:.3f} / {f['p99_ms']:.3f} | "
                f"{f['user_us_per_request']:.2f} + {f['system_us_per_request']:.2f} | "
                f"{f['client_cpu_share']:.0%} | "
                + (f"{redis_get:,.0f} | {f['rps'] / redis_get:.2f}x |" if redis_get else "- | - |"))
    return "\n".join(lines) + "\n"


def main() -> None:
    config = settings()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")
    out_dir = pathlib.Path(os.environ.get("BENCH_OUT", ROOT / "bench" / "results" / f"resp-{stamp}"))
    out_dir.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(message, flush=True)

    data = {"date": stamp, "command": "make bench-resp", "settings": config,
            "machine": machine(), "versions": versions()}
    with tempfile.TemporaryDirectory() as tmp:
        data["throughput"] = throughput(config, pathlib.Path(tmp), log)
        data["memory"], data["hash_memory"] = memory_per_key(config, pathlib.Path(tmp), log)
    data["noop"] = noop_ceiling(config, log)
    (out_dir / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    (out_dir / "results.md").write_text(markdown(data))
    print(markdown(data))
    print(f"results: {out_dir}")


if __name__ == "__main__":
    main()
