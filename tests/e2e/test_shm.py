"""Shared-memory readers (docs/shm.md) against the real quiverd: values equal to what HTTP reads,
the hot path, growth, compaction, TTL, deletes, drops, restarts, kills and bad input."""

import json
import os
import shutil
import pathlib
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pyarrow as pa
import pytest
import redis
import requests

import quiver
from quiverd import Server

SCHEMA = {
    "key": "id",
    "columns": {
        "id": {"dtype": "int64"},
        "f": {"dtype": "float32"},
        "d": {"dtype": "float64", "nullable": True},
        "i": {"dtype": "int32", "nullable": True},
        "b": {"dtype": "bool", "nullable": True},
        "h": {"dtype": "float16", "nullable": True},
        "ts": {"dtype": "timestamp[ms]", "nullable": True},
        "s": {"dtype": "utf8", "nullable": True},
        "bin": {"dtype": "binary", "nullable": True},
        "l": {"dtype": "list[int32]", "nullable": True},
        "emb": {"dtype": "fixed_size_list[float32, 8]", "nullable": True},
    },
}


def rows(start, count, version=0):
    ids = list(range(start, start + count))
    return {
        "id": ids,
        "f": [float(k + version) for k in ids],
        "d": [None if k % 7 == 0 else k * 0.5 for k in ids],
        "i": [None if k % 5 == 0 else k + version for k in ids],
        "b": [None if k % 3 == 0 else k % 2 == 0 for k in ids],
        "h": [None if k % 4 == 0 else float(k % 100) for k in ids],
        "ts": [None if k % 6 == 0 else k * 1000 for k in ids],
        "s": [None if k % 9 == 0 else f"string value {k} v{version}" * (1 + k % 3) for k in ids],
        "bin": [None if k % 8 == 0 else bytes([k % 256]) * (k % 20) for k in ids],
        "l": [None if k % 10 == 0 else list(range(k % 12)) for k in ids],
        "emb": [None if k % 11 == 0 else [float(k + e + version) for e in range(8)] for k in ids],
    }


def write(http, name, data):
    table = pa.table(data, schema=http.schema(name))
    http.write(name, table)


def test_reads_equal_http_reads_for_every_dtype(server):
    http = quiver.connect(server.url)
    http.create_table("all", SCHEMA)
    write(http, "all", rows(0, 500))
    shm = quiver.connect(f"shm://{server.data_dir}")
    assert shm.backend == "shm"
    assert shm.list_tables() == ["all"]
    assert shm.table_schema("all") == http.table_schema("all")
    keys = [3, 999, 0, 499, 42, 42, -1, 77]
    for columns in (None, ["s", "emb"], ["b"]):
        got = shm.read("all", keys, columns)
        want = http.read("all", keys, columns)
        assert got.found.tolist() == want.found.tolist()
        assert got.to_arrow().equals(want.to_arrow()), (got.to_arrow(), want.to_arrow())
    # Zero-copy NumPy as the other backends give it.
    matrix = shm.read("all", [1, 2, 999], ["f"]).to_numpy()
    assert matrix[0, 0] == 1.0 and np.isnan(matrix[2, 0])


def test_hot_path_reads_into_numpy(server):
    http = quiver.connect(server.url)
    http.create_table("all", SCHEMA)
    write(http, "all", rows(0, 100))
    shm = quiver.connect(f"shm://{server.data_dir}/quiver.sock")
    emb = shm.table("all", ["emb"])
    assert emb.width == 8 and emb.dtype == np.dtype("float32")
    row = emb.get(5)
    assert row.tolist() == [float(5 + e) for e in range(8)]
    assert emb.get(12345) is None
    out = np.empty(8, dtype=np.float32)
    assert emb.get(7, out=out) is out and out[0] == 7.0
    assert np.isnan(emb.get(11)).all()  # a null embedding
    keys = np.array([1, 500, 2, 11], dtype=np.int64)
    matrix = np.empty((4, 8), dtype=np.float32)
    found = emb.read_into(keys, matrix)
    assert found.tolist() == [True, False, True, True]
    assert matrix[0].tolist() == [float(1 + e) for e in range(8)]
    assert np.isnan(matrix[1]).all()
    # Several float64 columns... of one element type only.
    with pytest.raises(quiver.InvalidRequest, match="share an element type"):
        shm.table("all", ["f", "d"])
    with pytest.raises(quiver.InvalidRequest, match="not a fixed-width value column"):
        shm.table("all", ["s"])
    with pytest.raises(TypeError, match="float32"):
        emb.read_into(keys, np.empty((4, 8), dtype=np.float64))
    with pytest.raises(ValueError, match="4 x 8"):
        emb.read_into(keys, np.empty((3, 8), dtype=np.float32))
    with pytest.raises(TypeError, match="int64"):
        emb.get("text")


def test_the_shm_backend_is_read_only(server):
    quiver.connect(server.url).create_table("t", SCHEMA)
    shm = quiver.connect(f"shm://{server.data_dir}")
    for call in (lambda: shm.write("t", rows(0, 1)), lambda: shm.create_table("u", SCHEMA),
                 lambda: shm.drop_table("t"), lambda: shm.delete("t", [1]),
                 lambda: shm.snapshot()):
        with pytest.raises(quiver.Unsupported, match="shared-memory backend .* is read-only"):
            call()
    with pytest.raises(quiver.TableNotFound, match="'nope' does not exist"):
        shm.read("nope", [1])
    with pytest.raises(quiver.ConnectionError, match="is quiverd running there"):
        quiver.connect(f"shm://{server.data_dir}/other.sock")


def test_socket_is_private_and_metrics_show_readers(server):
    socket = server.data_dir / "quiver.sock"
    assert stat.S_ISSOCK(socket.stat().st_mode)
    assert stat.S_IMODE(socket.stat().st_mode) == 0o600
    http = quiver.connect(server.url)
    http.create_table("t", SCHEMA)
    write(http, "t", rows(0, 10))
    shm = quiver.connect(f"shm://{server.data_dir}")
    shm.read("t", [1])
    deadline = time.time() + 5
    while time.time() < deadline:
        metrics = requests.get(server.url + "/metrics").text
        if f'quiver_shm_reader_mapped_bytes{{pid="{os.getpid()}",table="t"}}' in metrics:
            break
        time.sleep(0.05)
    assert "quiver_shm_readers 1" in metrics
    assert f'quiver_shm_reader_retired_bytes{{pid="{os.getpid()}",table="t"}} 0' in metrics
    info = redis.Redis(port=server.resp_port).info("shm")
    assert info["shm_readers"] == 1 and info["shm_mapped_bytes"] > 0
    assert info["shm_socket"] == str(socket)
    status = shm.shm_status()
    assert status["readers"][0]["pid"] == os.getpid()
    assert status["readers"][0]["tables"][0]["table"] == "t"


def test_readers_follow_growth_compaction_ttl_deletes_and_drops(server):
    http = quiver.connect(server.url)
    http.create_table("t", {"key": "k", "columns": {"k": {"dtype": "utf8"},
                                                     "v": {"dtype": "int64"},
                                                     "s": {"dtype": "utf8"}}})
    shm = quiver.connect(f"shm://{server.data_dir}")

    def batch(count, version):
        return {"k": [f"key-{i}" for i in range(count)], "v": [i * 10 + version for i in range(count)],
                "s": [f"{version}" * 300 for _ in range(count)]}

    count = 100
    for version in range(7):  # 100 -> 6400 rows, then rewrites (heap garbage, compactions)
        if version < 6:
            count = 100 * 2 ** version
        http.write("t", batch(count, version))
        got = shm.read("t", [f"key-{i}" for i in range(count)])
        assert got.found.tolist() == [True] * count
        assert got.to_arrow().column("v").to_pylist() == [i * 10 + version for i in range(count)]
        assert set(got.to_arrow().column("s").to_pylist()) == {f"{version}" * 300}
    http.delete("t", ["key-1"])
    assert shm.read("t", ["key-1", "key-2"]).found.tolist() == [False, True]
    http.write("t", {"k": ["ttl"], "v": [1], "s": ["x"]}, ttl=0.2)
    assert shm.read("t", ["ttl"]).found.tolist() == [True]
    time.sleep(0.3)
    assert shm.read("t", ["ttl"]).found.tolist() == [False]
    # Drop and create again: name-based reads follow the new table; a row reader fails clearly.
    rows_reader = quiver.connect(f"shm://{server.data_dir}").table("t", ["v"])
    http.drop_table("t")
    with pytest.raises(quiver.TableNotFound):
        shm.read("t", ["key-2"])
    with pytest.raises(quiver.TableNotFound, match="was dropped"):
        rows_reader.get("key-2")
    http.create_table("t", {"key": "k", "columns": {"k": {"dtype": "utf8"},
                                                     "v": {"dtype": "int64"}}})
    http.write("t", {"k": ["key-2"], "v": [-2]})
    got = shm.read("t", ["key-2"])
    assert got.to_arrow().column("v").to_pylist() == [-2]


def test_readers_reattach_after_a_restart(tmp_path):
    data = tmp_path / "d"
    server = Server(tmp_path, data_dir=data)
    try:
        http = quiver.connect(server.url)
        http.create_table("t", SCHEMA)
        write(http, "t", rows(0, 50))
        shm = quiver.connect(f"shm://{data}")
        hot = shm.table("t", ["f"])
        assert hot.get(3).tolist() == [3.0]
        assert server.stop() == 0
        with pytest.raises(quiver.ConnectionError):
            for _ in range(100):  # the server's going is noticed within its heartbeat
                shm.read("t", [3])
                time.sleep(0.05)
        server = Server(tmp_path, data_dir=data)
        write(quiver.connect(server.url), "t", rows(0, 50, version=100))
        assert shm.read("t", [3], ["f"]).to_arrow().column("f").to_pylist() == [103.0]
        assert hot.get(3).tolist() == [103.0]
        # And after kill -9.
        server.stop(signal.SIGKILL)
        server = Server(tmp_path, data_dir=data)
        write(quiver.connect(server.url), "t", rows(0, 50, version=200))
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if hot.get(3).tolist() == [203.0]:
                    break
            except quiver.ConnectionError:
                pass
            time.sleep(0.05)
        assert hot.get(3).tolist() == [203.0]
    finally:
        server.stop()


READER = textwrap.dedent("""
    import sys, numpy as np, quiver
    rows = quiver.connect(sys.argv[1]).table("t", ["emb"])
    keys = np.array([k for k in range(1000) if k % 11], dtype=np.int64)  # no null embeddings
    out = np.empty((len(keys), 8), dtype=np.float32)
    print("ready", flush=True)
    while True:
        found = rows.read_into(keys, out)
        assert found.all() and (out[:, 1] == out[:, 0] + 1).all()
""")


def memfds(pid):
    fd_dir = f"/proc/{pid}/fd"
    return sum(1 for fd in os.listdir(fd_dir) if "memfd:" in os.readlink(f"{fd_dir}/{fd}"))


def test_killed_readers_leak_nothing(server, tmp_path):
    http = quiver.connect(server.url)
    http.create_table("t", SCHEMA)
    write(http, "t", rows(0, 2000))
    script = tmp_path / "reader.py"
    script.write_text(READER)
    dev_shm = set(os.listdir("/dev/shm"))
    before = memfds(server.process.pid)
    url = f"shm://{server.data_dir}"
    for _ in range(20):
        batch = [subprocess.Popen([sys.executable, str(script), url], stdout=subprocess.PIPE)
                 for _ in range(5)]
        for reader in batch:
            assert reader.stdout.readline().strip() == b"ready"
        time.sleep(0.02)  # mid-read
        for reader in batch:
            assert reader.poll() is None  # still reading (it stops only on a wrong answer)
            reader.kill()
            reader.wait()
            reader.stdout.close()
    deadline = time.time() + 5
    while time.time() < deadline and "quiver_shm_readers 0" not in requests.get(
            server.url + "/metrics").text:
        time.sleep(0.05)
    assert "quiver_shm_readers 0" in requests.get(server.url + "/metrics").text
    assert memfds(server.process.pid) == before
    assert set(os.listdir("/dev/shm")) == dev_shm
    # Still serving.
    assert quiver.connect(url).read("t", [1]).found.tolist() == [True]


def test_hot_path_takes_numpy_bytes_keys(server):
    http = quiver.connect(server.url)
    http.create_table("s", {"key": "k", "columns": {"k": {"dtype": "utf8"},
                                                     "v": {"dtype": "float64"}}})
    http.write("s", {"k": ["a", "bb", "ccc"], "v": [1.0, 2.0, 3.0]})
    rows = quiver.connect(f"shm://{server.data_dir}").table("s")
    out = np.empty((4, 1))
    found = rows.read_into(np.array(["ccc", "a", "zz", "bb"], dtype="S"), out)
    assert found.tolist() == [True, True, False, True]
    assert out[[0, 1, 3], 0].tolist() == [3.0, 1.0, 2.0]
    with pytest.raises(TypeError, match="bytes array"):
        rows.read_into(np.array(["a"]), np.empty((1, 1)))


READ_EMBEDDED = textwrap.dedent("""
    import sys, quiver
    db = quiver.connect(sys.argv[1])
    print(db.read("t", [1, 2, 3], ["f"]).to_arrow().column("f").to_pylist())
""")


def test_an_embedded_engine_with_a_data_directory_publishes(tmp_path):
    data = tmp_path / "embedded"
    db = quiver.open(data)
    try:
        db.create_table("t", SCHEMA)
        db.write("t", pa.table(rows(1, 2), schema=db.schema("t")))
        script = tmp_path / "read.py"
        script.write_text(READ_EMBEDDED)
        out = subprocess.run([sys.executable, str(script), f"shm://{data}"], check=True,
                             capture_output=True, text=True).stdout
        assert out.strip() == "[1.0, 2.0, None]"
    finally:
        db.close()
    assert not (data / "quiver.sock").exists()
    off = quiver.open(tmp_path / "off", shm_socket="off")
    assert not (tmp_path / "off" / "quiver.sock").exists()
    off.close()


def test_cli_prints_the_readers(server):
    quiver.connect(server.url).create_table("t", SCHEMA)
    shm = quiver.connect(f"shm://{server.data_dir}")
    shm.read("t", [1])
    out = subprocess.run([sys.executable, "-m", "quiver.cli", "shm", "status", "--socket",
                          str(server.data_dir)], check=True, capture_output=True, text=True).stdout
    status = json.loads(out)
    assert status["socket"] == str(server.data_dir / "quiver.sock")
    assert [reader["pid"] for reader in status["readers"]].count(os.getpid()) == 1
    missing = subprocess.run([sys.executable, "-m", "quiver.cli", "shm", "status", "--socket",
                              str(server.data_dir / "nope")], capture_output=True, text=True)
    assert missing.returncode == 1 and "is quiverd running there" in missing.stderr


def test_a_cpp_process_reads_the_same_values(server):
    from quiverd import QUIVERD

    program = pathlib.Path(QUIVERD).parent / "examples" / "shm_reader"
    http = quiver.connect(server.url)
    http.create_table("all", SCHEMA)
    write(http, "all", rows(0, 20))
    socket = str(server.data_dir / "quiver.sock")
    out = subprocess.run([str(program), socket, "all", "--fixed", "f,d,i", "3", "5", "99"],
                         check=True, capture_output=True, text=True).stdout.splitlines()
    assert out == ["3: f=3 d=1.5 i=3", "5: f=5 d=2.5 i=null", "99: (missing)"]
    out = subprocess.run([str(program), socket, "all", "7", "8"], check=True,
                         capture_output=True, text=True).stdout
    assert out.startswith("found 2 of 2\n") and "string value 7 v0" in out
    failed = subprocess.run([str(program), socket, "nope", "1"], capture_output=True, text=True)
    assert failed.returncode == 1 and "table 'nope' does not exist" in failed.stderr


def test_an_idle_reader_holding_freed_memory_loses_its_lease(start_server):
    server = start_server("--shm-lease-seconds", "1")
    http = quiver.connect(server.url)
    http.create_table("t", SCHEMA)
    write(http, "t", rows(0, 100))
    shm = quiver.connect(f"shm://{server.data_dir}")
    assert shm.read("t", [1]).found.tolist() == [True]
    write(http, "t", rows(100, 5000))  # the index grows: the one this reader maps is freed
    label = f'{{pid="{os.getpid()}",table="t"}}'

    def retired():
        for line in requests.get(server.url + "/metrics").text.splitlines():
            if line.startswith("quiver_shm_reader_retired_bytes" + label):
                return int(float(line.split()[-1]))
        return None

    deadline = time.time() + 5
    while time.time() < deadline and not retired():
        time.sleep(0.05)
    assert retired() > 0
    deadline = time.time() + 10
    while time.time() < deadline and retired() is not None:
        time.sleep(0.1)
    assert retired() is None  # let go
    assert "lease expired" in server.log() and f"pid={os.getpid()}" in server.log()
    # Its next call maps afresh.
    assert shm.read("t", [4000]).found.tolist() == [True]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root (and setpriv) to read as another user")
def test_the_socket_mode_decides_who_reads(start_server):
    """The C++ reader (examples/shm_reader) run as nobody: refused by a 0600 socket with an
    error saying why, let in by a 0666 one."""
    from quiverd import QUIVERD

    program = pathlib.Path(QUIVERD).parent / "examples" / "shm_reader"
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(program)]
    if subprocess.run(as_nobody, capture_output=True).returncode != 2:  # its usage message
        pytest.skip("nobody cannot run the build (a checkout only root may read)")
    shared = pathlib.Path(tempfile.mkdtemp(prefix="quiver-shm-mode-"))
    try:
        shared.chmod(0o755)
        for mode in ("0600", "0666"):
            socket = shared / f"quiver-{mode}.sock"
            server = start_server("--shm-socket", str(socket), "--shm-socket-mode", mode)
            assert stat.S_IMODE(socket.stat().st_mode) == int(mode, 8)
            http = quiver.connect(server.url)
            http.create_table("t", SCHEMA)
            write(http, "t", rows(0, 10))
            out = subprocess.run(as_nobody + [str(socket), "t", "--fixed", "f", "3"],
                                 capture_output=True, text=True, timeout=60)
            if mode == "0600":
                assert out.returncode == 1, out
                assert "Permission denied (the socket's permissions do not let this user in)" \
                    in out.stderr
            else:
                assert out.returncode == 0 and out.stdout == "3: f=3\n", out
            server.stop()
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def shmem_kb():
    for line in open("/proc/meminfo"):
        if line.startswith("Shmem:"):
            return int(line.split()[1])
    raise AssertionError("no Shmem in /proc/meminfo")


def test_kill_9_of_quiverd_and_its_readers_frees_the_shared_memory(tmp_path):
    before = shmem_kb()
    server = Server(tmp_path)
    http = quiver.connect(server.url)
    http.create_table("t", {"key": "k", "columns": {"k": {"dtype": "int64"},
                                                     "e": {"dtype": "fixed_size_list[float32, 256]"}}})
    block = np.ones((50_000, 256), dtype=np.float32)  # 50 MB of rows
    http.write("t", {"k": np.arange(50_000), "e": block})
    script = tmp_path / "reader.py"
    script.write_text(textwrap.dedent("""
        import sys, numpy as np, quiver
        rows = quiver.connect(sys.argv[1]).table("t")
        out = np.empty((1000, rows.width), dtype=np.float32)
        print("ready", flush=True)
        while True:
            rows.read_into(np.arange(1000, dtype=np.int64), out)
    """))
    readers = [subprocess.Popen([sys.executable, str(script), f"shm://{server.data_dir}"],
                                stdout=subprocess.PIPE) for _ in range(3)]
    for reader in readers:
        assert reader.stdout.readline().strip() == b"ready"
    assert shmem_kb() - before > 40_000
    server.stop(signal.SIGKILL)  # the readers' mappings keep the memory alive ...
    time.sleep(0.2)
    assert shmem_kb() - before > 40_000
    for reader in readers:  # ... until they go too
        reader.kill()
        reader.wait()
        reader.stdout.close()
    deadline = time.time() + 10
    while time.time() < deadline and shmem_kb() - before > 10_000:
        time.sleep(0.1)
    assert shmem_kb() - before < 10_000
