"""Quiver against Redis, one command: `make bench` (docs/benchmarks.md explains the method).

Starts quiverd (HTTP and Arrow Flight) and two Debian redis-servers (packed blobs; Feast-style
hashes) on free loopback ports, loads the same dataset into each, and runs every scenario in
fresh client processes (worker.py): latency of 1000 random keys and of a single key (answer
received; decoded into a NumPy matrix), ingest rows/s, memory per row, and requests/s with p99
under 1, 4 and 16 concurrent clients. Writes bench/results/<UTC timestamp>/ with results.json
(every figure and every run), results.md and PNG plots (report.py).

Environment (defaults in brackets):
  BENCH_ROWS [100000]            rows per dataset; 10000000 is the full size
  BENCH_DATASETS [float32x10,embedding128]
  BENCH_SYSTEMS [all]            comma-separated labels from clients.SYSTEMS
  BENCH_RUNS [3]                 fresh client processes per system for the latency scenarios
  BENCH_ITERATIONS [1000]        timed calls per latency scenario and run, at most ...
  BENCH_SCENARIO_SECONDS [1]     ... this long (at least 100 calls)
  BENCH_WARMUP [100]             untimed calls before them
  BENCH_CONCURRENCY [1,4,16]     concurrent client processes per throughput level
  BENCH_THROUGHPUT_RUNS [3]      runs per throughput level
  BENCH_SECONDS [1]              measured seconds per throughput run
  BENCH_OUT [bench/results/<timestamp>]
  QUIVERD [build/quiverd]
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

import report  # noqa: E402
from clients import BASELINE, READ_ONLY, SERVED, SYSTEMS  # noqa: E402
from common import DATASETS, percentiles  # noqa: E402
from quiverd import QUIVERD, Server, free_port  # noqa: E402


def _env_list(name: str, default: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, default).split(",") if v.strip()]


def settings() -> dict:
    systems = _env_list("BENCH_SYSTEMS", ",".join(SYSTEMS))
    datasets = _env_list("BENCH_DATASETS", ",".join(DATASETS))
    for name in systems:
        if name not in SYSTEMS:
            raise SystemExit(f"BENCH_SYSTEMS: unknown system {name!r} (known: {', '.join(SYSTEMS)})")
    for name in datasets:
        if name not in DATASETS:
            raise SystemExit(f"BENCH_DATASETS: unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    if BASELINE not in systems:
        raise SystemExit(f"BENCH_SYSTEMS must include the baseline {BASELINE!r}")
    if "quiver shm" in systems and "quiver HTTP" not in systems:
        raise SystemExit("BENCH_SYSTEMS: quiver shm reads the table quiver HTTP loads: include both")
    return {
        "rows": int(os.environ.get("BENCH_ROWS", 100_000)),
        "datasets": datasets,
        "systems": systems,
        "runs": int(os.environ.get("BENCH_RUNS", 3)),
        "iterations": int(os.environ.get("BENCH_ITERATIONS", 1000)),
        "warmup": int(os.environ.get("BENCH_WARMUP", 100)),
        "scenario_seconds": float(os.environ.get("BENCH_SCENARIO_SECONDS", 1)),
        "concurrency": [int(c) for c in _env_list("BENCH_CONCURRENCY", "1,4,16")],
        "throughput_runs": int(os.environ.get("BENCH_THROUGHPUT_RUNS", 3)),
        "seconds": float(os.environ.get("BENCH_SECONDS", 1)),
    }


# --- servers -------------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class RedisServer:
    """Debian's redis-server on a free loopback port, without persistence (unless `extra` turns
    it on), otherwise its defaults (one thread serving commands)."""

    def __init__(self, directory: pathlib.Path, *extra: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is missing: run scripts/setup.sh (Debian's redis-server)")
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(directory), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                             text=True).stdout.strip() != "PONG":
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


# --- client processes ----------------------------------------------------------------------------


def _worker(spec: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE / "worker.py"), json.dumps(spec)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _answer(process: subprocess.Popen, spec: dict) -> dict:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"client process failed ({spec['system']}, {spec['mode']}): exit "
                         f"{process.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def run_worker(spec: dict) -> dict:
    return _answer(_worker(spec), spec)


def run_together(specs: list[dict]) -> list[dict]:
    """Starts every client, waits until each has warmed up, then releases them at once."""
    processes = [_worker(spec) for spec in specs]
    for process, spec in zip(processes, specs):
        if process.stdout.readline().strip() != "ready":
            raise SystemExit(f"client process failed to warm up ({spec['system']})")
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    return [_answer(p, s) for p, s in zip(processes, specs)]


# --- the suite ------------------------------------------------------------------------------------


def _median_of(runs: list[dict]) -> dict:
    keys = ("p50_us", "p99_us", "p999_us", "mean_us")
    return {k: statistics.median(r[k] for r in runs) for k in keys}


# Phases run one after the other, each with only its servers up, so that at the full size
# (10M rows of 512-byte embeddings) no more than two servers hold the data at once. Within a
# phase the systems take turns, round by round, so drift on the machine touches them alike.
PHASES = [["quiver embedded"], ["quiver HTTP", "quiver Flight", "quiver shm", "redis MGET"],
          ["redis HMGET"]]


class Servers:
    """The servers a phase needs: quiverd (HTTP and Flight), redis-server for blobs or hashes."""

    def __init__(self, systems: list[str], directory: pathlib.Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.endpoints: dict = {}
        self.pids: dict[str, int] = {}
        self._stops = []
        try:
            if {"quiver HTTP", "quiver Flight", "quiver shm"} & set(systems):
                quiverd = Server(directory)
                self._stops.append(quiverd.stop)
                self.endpoints.update(http=quiverd.url, flight=quiverd.flight_url,
                                      shm=f"shm://{quiverd.data_dir}")
                self.pids.update({"quiver HTTP": quiverd.process.pid,
                                  "quiver Flight": quiverd.process.pid})
            for system, endpoint in (("redis MGET", "redis_blobs"), ("redis HMGET", "redis_hashes")):
                if system in systems:
                    server = RedisServer(directory / endpoint)
                    self._stops.append(server.stop)
                    self.endpoints[endpoint] = server.port
                    self.pids[system] = server.process.pid
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for stop in self._stops:
            stop()
        self._stops = []


def _ingest(system: str, base: dict, servers: Servers, out: dict, log) -> None:
    """Loads every row through one fresh client; the server's resident-memory growth over the
    load is its memory. quiverd takes the Flight load first, drops that table (its memory is
    unmapped), then the HTTP load, which stays for the reads."""
    rows = base["rows"]
    table = "bench_flight" if system == "quiver Flight" else "bench"
    pid = servers.pids.get(system)
    before = rss_bytes(pid) if pid else 0
    answer = run_worker({**base, "mode": "load", "system": system, "table": table,
                         "create": True})
    out["ingest"][system] = {"rows_per_s": rows / answer["seconds"], "seconds": answer["seconds"]}
    if pid:
        grown = rss_bytes(pid) - before
        out["memory"][system] = {"bytes_per_row": grown / rows, "rss_growth_bytes": grown}
    if system == "quiver Flight":
        import quiver

        with quiver.connect(servers.endpoints["http"]) as db:
            db.drop_table(table)
    log(f"  load {system}: {rows / answer['seconds']:,.0f} rows/s")


def _latency(systems: list[str], base: dict, config: dict, out: dict, log) -> None:
    runs: dict[str, list[dict]] = {s: [] for s in systems}
    for run in range(config["runs"]):
        for system in systems:
            runs[system].append(run_worker({
                **base, "mode": "latency", "system": system, "seed": run,
                "iterations": config["iterations"], "warmup": config["warmup"],
                "max_seconds": config["scenario_seconds"]}))
        log(f"  latency of {', '.join(systems)}: run {run + 1}/{config['runs']}")
    for system, answers in runs.items():
        if "load_seconds" in answers[0]:  # the embedded engine loads in each latency process
            seconds = statistics.median(a["load_seconds"] for a in answers)
            out["ingest"][system] = {"rows_per_s": base["rows"] / seconds, "seconds": seconds}
        for scenario in answers[0]["scenarios"]:
            scenario_runs = [a["scenarios"][scenario] for a in answers]
            out["latency"].setdefault(scenario, {})[system] = {**_median_of(scenario_runs),
                                                               "runs": scenario_runs}


def _throughput(systems: list[str], base: dict, config: dict, out: dict, log) -> None:
    """`level` client processes at once, each reading 1000 keys back to back."""
    for level in config["concurrency"]:
        for system in systems:
            per_run = []
            for run in range(config["throughput_runs"]):
                specs = [{**base, "mode": "throughput", "system": system,
                          "seed": 1000 + run * 100 + c, "warmup": 10,
                          "seconds": config["seconds"]} for c in range(level)]
                answers = run_together(specs)
                latencies = np.concatenate([a["latencies_us"] for a in answers])
                per_run.append({"requests_per_s": sum(a["requests"] / a["seconds"]
                                                      for a in answers),
                                **percentiles(latencies)})
            out["throughput"].setdefault(system, {})[str(level)] = {
                "requests_per_s": statistics.median(r["requests_per_s"] for r in per_run),
                "p50_us": statistics.median(r["p50_us"] for r in per_run),
                "p99_us": statistics.median(r["p99_us"] for r in per_run),
                "runs": per_run}
        if systems:
            log(f"  throughput of {', '.join(systems)} with {level} client(s)")


def bench_dataset(name: str, config: dict, tmp: pathlib.Path, log) -> dict:
    out = {"ingest": {}, "memory": {}, "latency": {}, "throughput": {}}
    for number, phase in enumerate(PHASES):
        systems = [s for s in phase if s in config["systems"]]
        if not systems:
            continue
        servers = Servers(systems, tmp / f"{name}-{number}")
        try:
            base = {"dataset": name, "rows": config["rows"], "endpoints": servers.endpoints}
            served = [s for s in systems if s in SERVED]
            loaders = [s for s in served if s not in READ_ONLY]
            for system in sorted(loaders, key=lambda s: s != "quiver Flight"):
                _ingest(system, base, servers, out, log)
            _latency(systems, base, config, out, log)
            _throughput(served, base, config, out, log)
        finally:
            servers.stop()
    # Report in one order whatever the phases: quiverd, Redis, embedded.
    order = [s for s in SYSTEMS if s in config["systems"]]
    for section in ("ingest", "memory", "throughput"):
        out[section] = {s: out[section][s] for s in order if s in out[section]}
    out["latency"] = {k: {s: v[s] for s in order} for k, v in out["latency"].items()}
    add_ratios(out)
    return out


def add_ratios(out: dict) -> None:
    """Each figure's ratio to Redis MGET in the same run: > 1 means faster than the baseline."""
    for systems in out["latency"].values():
        base = systems[BASELINE]["p50_us"]
        for figures in systems.values():
            figures["speedup_vs_mget"] = base / figures["p50_us"]
    for level, base in out["throughput"].get(BASELINE, {}).items():
        for levels in out["throughput"].values():
            levels[level]["ratio_vs_mget"] = levels[level]["requests_per_s"] / base["requests_per_s"]
    if BASELINE in out["ingest"]:
        base = out["ingest"][BASELINE]["rows_per_s"]
        for figures in out["ingest"].values():
            figures["ratio_vs_mget"] = figures["rows_per_s"] / base


def _command_output(*args: str) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict:
    cpu = "unknown"
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = next(int(line.split()[1]) for line in pathlib.Path("/proc/meminfo").read_text()
                  .splitlines() if line.startswith("MemTotal:"))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory / 2**20, 1),
            "kernel": platform.release(), "virtualization": _command_output("systemd-detect-virt"),
            "os": _command_output("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME")}


def versions() -> dict:
    import hiredis
    import pyarrow
    import redis

    commit = _command_output("git", "-C", str(ROOT), "describe", "--always", "--dirty")
    return {"quiver": commit, "quiverd": _command_output(str(QUIVERD), "--version"),
            "redis_server": _command_output("redis-server", "--version"),
            "python": platform.python_version(), "pyarrow": pyarrow.__version__,
            "redis_py": redis.__version__, "hiredis": hiredis.__version__}


def main() -> None:
    config = settings()
    started = datetime.datetime.now(datetime.timezone.utc)
    out_dir = pathlib.Path(os.environ.get("BENCH_OUT") or
                           ROOT / "bench" / "results" / started.strftime("%Y-%m-%dT%H-%M-%SZ"))
    out_dir.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(f"[{time.monotonic() - began:6.0f} s] {message}", flush=True)

    command = " ".join([f"BENCH_ROWS={config['rows']}"] +
                       [f"{k}={v}" for k, v in sorted(os.environ.items())
                        if k.startswith("BENCH_") and k not in ("BENCH_ROWS", "BENCH_OUT")] +
                       ["make bench"])
    results = {"started": started.isoformat(timespec="seconds"), "command": command,
               "settings": config, "machine": machine(), "versions": versions(), "datasets": {}}
    began = time.monotonic()
    log(f"Quiver vs Redis: {config['rows']:,} rows, datasets {', '.join(config['datasets'])}; "
        f"results in {out_dir}")
    with tempfile.TemporaryDirectory(prefix="quiver-bench-") as tmp:
        for name in config["datasets"]:
            log(f"{name}:")
            results["datasets"][name] = bench_dataset(name, config, pathlib.Path(tmp), log)
    results["duration_s"] = round(time.monotonic() - began, 1)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    report.write(results, out_dir)
    print()
    print((out_dir / "results.md").read_text())
    log(f"wrote {out_dir} in {results['duration_s']:.0f} s")


if __name__ == "__main__":
    main()
