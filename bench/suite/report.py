"""results.json -> results.md and PNG plots. Run by run.py; alone, it redraws a results
directory: `python bench/suite/report.py bench/results/<timestamp>`."""

from __future__ import annotations

import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SCENARIOS = {
    "batch": "1000 random keys × all columns",
    "single": "a single key × all columns",
}
DATASET_TITLES = {
    "float32x10": "10 float32 columns",
    "embedding128": "one 128-float32 embedding column",
}
INCLUDES = """\
What each figure includes (docs/benchmarks.md has the whole method):

- **received**: from the Python call until the whole answer is in the client, framed but not decoded:
  the HTTP body's bytes; the Flight answer as the package's Arrow result (zero-copy over the gRPC
  message); redis-py's list of values (parsed by hiredis); for the embedded engine and quiver shm,
  the Arrow result. Includes encoding the request from a Python list of string keys.
- **NumPy**: the same, then decoded into a (keys × features) float32 matrix: quiver's
  `ReadResult.to_numpy()`; `np.frombuffer` over the joined Redis values; for quiver shm, the hot
  path `rows.read_into(keys, out)` into a matrix allocated once.
- Latency figures are the median, across fresh client processes, of each process's p50, p99 and
  p99.9; "× MGET" is Redis MGET's p50 divided by the system's p50, in the same run (above 1: faster).
- **ingest**: rows/s of one client loading every row, including encoding them on the client
  (Arrow batches for Quiver; pipelined MSET of 1000 keys, or one HSET per key, for Redis).
- **memory**: the server's resident-memory growth over the load divided by the rows.
- **throughput**: 1000-key reads (received, not decoded) back to back from N client processes at
  once; requests/s summed over clients, p99 over all their requests. The clients share the
  machine's cores with the server.
"""


def _us(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _ratio(value: float) -> str:
    return f"{value:.2f}×" if value < 10 else f"{value:.1f}×"


def _latency_table(latency: dict, scenario: str) -> list[str]:
    received, decoded = latency[f"{scenario}_arrive"], latency[f"{scenario}_matrix"]
    lines = ["| System | received p50 | p99 | p99.9 | NumPy p50 | p99 | p99.9 | × MGET (received) | × MGET (NumPy) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for system in received:
        r, d = received[system], decoded[system]
        lines.append(f"| {system} | {_us(r['p50_us'])} | {_us(r['p99_us'])} | {_us(r['p999_us'])} "
                     f"| {_us(d['p50_us'])} | {_us(d['p99_us'])} | {_us(d['p999_us'])} "
                     f"| {_ratio(r['speedup_vs_mget'])} | {_ratio(d['speedup_vs_mget'])} |")
    return lines


def markdown(results: dict) -> str:
    s = results["settings"]
    m = results["machine"]
    v = results["versions"]
    lines = [f"# Quiver vs Redis, {results['started']}", "",
             f"- Command: `{results['command']}` ({results['duration_s']:.0f} s)",
             f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, "
             f"kernel {m['kernel']}, virtualization: {m['virtualization']}",
             f"- Versions: quiver {v['quiver']}, {v['redis_server']}, Python {v['python']}, "
             f"pyarrow {v['pyarrow']}, redis-py {v['redis_py']} with hiredis {v['hiredis']}",
             f"- {s['rows']:,} rows per dataset; latency: {s['runs']} fresh client processes per "
             f"system, each {s['warmup']} warm-up then {s['iterations']} timed calls per "
             f"scenario; throughput: {s['throughput_runs']} runs of {s['seconds']:g} s per level",
             ""]
    for name, data in results["datasets"].items():
        lines += [f"## {name}: {s['rows']:,} rows × {DATASET_TITLES[name]}", ""]
        for scenario, title in SCENARIOS.items():
            if f"{scenario}_arrive" in data["latency"]:
                lines += [f"Latency, {title} (µs):", ""] + _latency_table(data["latency"], scenario) + [""]
        lines += ["Ingest and memory:", "",
                  "| System | ingest rows/s | × MGET | memory bytes/row |", "|---|---:|---:|---:|"]
        for system, figures in data["ingest"].items():
            memory = data["memory"].get(system)
            per_row = f"{memory['bytes_per_row']:,.0f}" if memory else "n/a"
            lines.append(f"| {system} | {figures['rows_per_s']:,.0f} | "
                         f"{_ratio(figures.get('ratio_vs_mget', float('nan')))} | {per_row} |")
        lines.append("")
        if data["throughput"]:
            levels = list(next(iter(data["throughput"].values())))
            header = " | ".join(f"{n} client{'s' if n != '1' else ''}: req/s | p99 µs" for n in levels)
            lines += ["Throughput, 1000-key reads (received):", "", f"| System | {header} | × MGET at {levels[-1]} |",
                      "|---|" + "---:|---:|" * len(levels) + "---:|"]
            for system, by_level in data["throughput"].items():
                cells = " | ".join(f"{by_level[n]['requests_per_s']:,.0f} | {_us(by_level[n]['p99_us'])}"
                                   for n in levels)
                lines.append(f"| {system} | {cells} | {_ratio(by_level[levels[-1]]['ratio_vs_mget'])} |")
            lines.append("")
        lines += [f"![latency](latency_{name}.png)", f"![throughput](throughput_{name}.png)", ""]
    lines.append(INCLUDES)
    return "\n".join(lines)


def plot_latency(name: str, data: dict, rows: int, path: pathlib.Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    percentiles = [("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")]
    for axis, (form, title) in zip(axes, [("arrive", "received"), ("matrix", "into NumPy")]):
        systems = data["latency"][f"batch_{form}"]
        width = 0.8 / len(percentiles)
        for i, (key, label) in enumerate(percentiles):
            xs = [x + (i - 1) * width for x in range(len(systems))]
            axis.bar(xs, [f[key] for f in systems.values()], width, label=label)
        axis.set_xticks(range(len(systems)), [s.replace(" ", "\n", 1) for s in systems])
        axis.set_yscale("log")
        axis.set_title(f"1000 random keys, {title}")
        axis.grid(axis="y", which="both", alpha=0.3)
    axes[0].set_ylabel("latency (µs, log scale)")
    axes[0].legend()
    figure.suptitle(f"{name}: {rows:,} rows; median of runs' percentiles")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_throughput(name: str, data: dict, rows: int, path: pathlib.Path) -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for system, by_level in data["throughput"].items():
        levels = [int(n) for n in by_level]
        left.plot(levels, [f["requests_per_s"] for f in by_level.values()], marker="o", label=system)
        right.plot(levels, [f["p99_us"] for f in by_level.values()], marker="o", label=system)
    for axis, label in ((left, "requests/s (1000 keys each)"), (right, "p99 latency (µs)")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(levels, [str(n) for n in levels])
        axis.set_xlabel("concurrent client processes")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    right.set_yscale("log")
    left.legend()
    figure.suptitle(f"{name}: {rows:,} rows; throughput and p99 against concurrency")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(results: dict, out_dir: pathlib.Path) -> None:
    rows = results["settings"]["rows"]
    for name, data in results["datasets"].items():
        if "batch_arrive" in data["latency"]:
            plot_latency(name, data, rows, out_dir / f"latency_{name}.png")
        if data["throughput"]:
            plot_throughput(name, data, rows, out_dir / f"throughput_{name}.png")
    (out_dir / "results.md").write_text(markdown(results))


if __name__ == "__main__":
    directory = pathlib.Path(sys.argv[1])
    write(json.loads((directory / "results.json").read_text()), directory)
