"""Peak resident memory of quiverd under the memory attacks of issue 21, one command:
`make bench-attacks` (docs/benchmarks.md, "Hostile clients").

Each attack runs against a fresh quiverd (QUIVERD, default build/quiverd; pass an older build to
compare), and reports its resident memory before and its peak (VmHWM) after:

  parquet-bomb   a 2 KB Parquet body (zstd) whose one 1 MiB value fills 1,000 rows: 1 GB decoded
  ipc-bomb       a 40 KB Arrow IPC stream (zstd) of the same rows
  json-bomb      a 40 MB JSON body of small numbers (a document of some 600 MB)
  get-pipeline   SET an 8 MiB value, then GET it 250 times in one write, the replies left unread
  slow-values    6 RESP clients each sending 150 MiB of an unfinished 200 MiB value

each once without limits and once with --maxmemory of 64 MiB (BENCH_FLAGS adds flags to both).
"""

import os
import pathlib
import shlex
import socket
import sys
import tempfile
import time

import redis
import requests

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests"))
from hostile import decode_bombs, send_unfinished_values  # noqa: E402
from quiverd import QUIVERD, Server, peak_rss_bytes, rss_bytes  # noqa: E402

SCHEMA = {"key": "id", "columns": {"id": {"dtype": "utf8", "nullable": False},
                                   "name": {"dtype": "utf8"}, "score": {"dtype": "float64"}}}


def write_attack(content_type, body):
    def run(server):
        requests.put(f"{server.url}/api/v1/table/t", json=SCHEMA)
        response = requests.put(f"{server.url}/api/v1/table/t/write", data=body,
                                headers={"Content-Type": content_type}, timeout=600)
        return f"HTTP {response.status_code}"
    return run


def get_pipeline(server):
    client = redis.Redis(port=server.resp_port)
    client.set("bigv", b"x" * (8 << 20))
    with socket.create_connection(("127.0.0.1", server.resp_port)) as conn:
        conn.sendall(b"GET bigv\r\n" * 250)
        time.sleep(4)
    return "replies unread for 4 s"


def slow_values(server):
    conns, closed = send_unfinished_values(server.resp_port)
    time.sleep(1)
    for conn in conns:
        conn.close()
    return f"{closed} sends refused"


def main() -> None:
    attacks = {name: write_attack(*spec) for name, spec in decode_bombs().items()}
    attacks["get-pipeline"] = get_pipeline
    attacks["slow-values"] = slow_values
    extra = shlex.split(os.environ.get("BENCH_FLAGS", ""))
    print(f"quiverd: {QUIVERD}")
    print("| attack | flags | RSS before (MiB) | peak RSS (MiB) | outcome |")
    print("|---|---|---|---|---|")
    for name, attack in attacks.items():
        # 64 MiB as a plain number: builds before sizes were read Redis's way read "64mb" not.
        for flags in ([], ["--maxmemory", str(64 << 20)]):
            with tempfile.TemporaryDirectory() as tmp:
                server = Server(pathlib.Path(tmp), *flags, *extra)
                before = rss_bytes(server.process.pid)
                try:
                    outcome = attack(server)
                except (OSError, requests.RequestException, redis.RedisError) as error:
                    outcome = f"client error: {type(error).__name__}"
                alive = server.process.poll() is None
                peak = peak_rss_bytes(server.process.pid) if alive else 0
                server.process.kill()
                server.process.wait()
                print(f"| {name} | {' '.join(flags) or '-'} | {before >> 20} | "
                      f"{peak >> 20 if alive else 'killed'} | {outcome} |", flush=True)


if __name__ == "__main__":
    main()
