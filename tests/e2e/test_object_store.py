"""Backups to an object store and stateless bootstrap (docs/object-storage.md), against the real
quiverd and a real S3-compatible server (moto, started by tests/s3server.py), plus file://.

A leader uploads its snapshots and sealed log segments; a node started with an empty data
directory restores the newest complete set and replays the log after it. Covered: every table
row and key back after the leader is killed; the store unreachable at start and mid-run; a second
leader refused; a damaged object named; kill -9 during uploads and during a restore."""

import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import pyarrow.fs as pafs
import pytest
import redis
import requests

import quiver
from quiverd import QUIVERD, Server, free_ports
from s3server import S3Server, s3_env

os.environ.update({k: v for k, v in s3_env().items() if k.startswith("AWS_")})

SCHEMA = {"key": "id", "columns": {"id": {"dtype": "utf8"}, "v": {"dtype": "int64"},
                                   "x": {"dtype": "float32"},
                                   "emb": {"dtype": "fixed_size_list[float32, 4]"}}}
LEASE = ("--object-store-lease-seconds", "1")
QUIVER_CLI = pathlib.Path(sys.executable).parent / "quiver"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with S3Server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture(params=["s3", "file"])
def store_uri(request, s3, tmp_path):
    if request.param == "s3":
        return s3.uri(f"quiver-{random.getrandbits(32):08x}/backups/node")
    return f"file://{tmp_path}/bucket/backups"


def kill(server: Server) -> None:
    server.process.kill()
    server.process.wait()


def wait_uploaded(server: Server, timeout: float = 20) -> dict[str, float]:
    """Until the newest manifest holds every change written so far."""
    deadline = time.monotonic() + timeout
    while True:
        m = server.metrics()
        if m["quiver_object_store_uploaded_lsn"] >= m["quiver_wal_last_lsn"] > 0:
            return m
        assert time.monotonic() < deadline, f"uploads did not catch up: {m}\n{server.log()}"
        time.sleep(0.05)


def write_rows(server: Server, table: str, first: int, count: int, version: int) -> None:
    ids = range(first, first + count)
    columns = {"id": [f"k{i}" for i in ids], "v": [version] * count, "x": [i / 4 for i in ids],
               "emb": [[i, version, 0.5, -1] for i in ids]}
    r = requests.put(f"{server.url}/api/v1/table/{table}/write", json={"columns": columns},
                     timeout=10)
    assert r.status_code == 200, r.text


def contents(server: Server, table: str, keys: int = 6000) -> dict:
    """The rows of keys k0..k<keys-1> that exist, by key."""
    with quiver.connect(server.url) as db:
        result = db.read(table, [f"k{i}" for i in range(keys)])
    rows = result.to_arrow().to_pylist()
    return {f"k{i}": row for i, (row, found) in enumerate(zip(rows, result.found)) if found}


def run_quiverd(data_dir, *args, timeout=60):
    """quiverd expected to fail at start: (exit status, stderr)."""
    http_port, flight_port, resp_port = free_ports(3)
    done = subprocess.run(
        [str(QUIVERD), "--data-dir", str(data_dir), "--http-port", str(http_port),
         "--flight-port", str(flight_port), "--resp-port", str(resp_port), *args],
        capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stderr


def test_a_killed_leader_is_restored_whole_on_a_new_node(start_server, spawn_server,
                                                         store_uri, tmp_path):
    leader = spawn_server("--object-store", store_uri, "--upload-interval", "0.2",
                          "--wal-segment-bytes", "65536", *LEASE)
    assert requests.put(f"{leader.url}/api/v1/table/t", json=SCHEMA, timeout=5).status_code == 201
    write_rows(leader, "t", 0, 3000, 1)
    assert requests.post(f"{leader.url}/api/v1/admin/snapshot", json={},
                         timeout=30).status_code == 200
    write_rows(leader, "t", 1000, 3000, 2)  # after the snapshot: replayed from the log
    requests.post(f"{leader.url}/api/v1/table/t/delete", json={"keys": ["k0", "k1"]}, timeout=5)
    keys = redis.Redis(port=leader.resp_port)
    keys.set("greeting", "hello")
    keys.hset("h", mapping={"a": "1", "b": "2"})
    m = wait_uploaded(leader)
    assert m["quiver_object_store_lag_seconds"] == 0
    assert m["quiver_object_store_uploaded_bytes_total"] > 0
    assert m["quiver_object_store_fenced"] == 0
    expected = contents(leader, "t")
    assert len(expected) == 3998
    kill(leader)  # no clean stop: only what was uploaded survives
    time.sleep(1.2)  # its lease lapses

    node = start_server("--object-store", store_uri, *LEASE, data_dir=tmp_path / "fresh")
    assert "restored from the object store" in node.log()
    assert contents(node, "t") == expected
    keys = redis.Redis(port=node.resp_port)
    assert keys.get("greeting") == b"hello"
    assert keys.hgetall("h") == {b"a": b"1", b"b": b"2"}
    # The new node leads: its writes upload too, and a later node gets them.
    write_rows(node, "t", 5000, 10, 3)
    assert node.stop() == 0  # a clean stop uploads the rest and releases the lease
    third = start_server("--object-store", store_uri, *LEASE, data_dir=tmp_path / "third")
    assert len(contents(third, "t")) == 4008


def test_the_store_unreachable_at_start_and_mid_run(start_server, spawn_server, s3, tmp_path):
    uri = s3.uri("quiver-unreachable/p", through_proxy=True)
    s3.proxy.down()
    code, err = run_quiverd(tmp_path / "empty", "--object-store", uri)
    assert code == 1
    assert "cannot bootstrap the empty data directory" in err and "quiver-unreachable" in err, err
    s3.proxy.up()
    leader = spawn_server("--object-store", uri, "--upload-interval", "0.1", *LEASE)
    requests.put(f"{leader.url}/api/v1/table/t", json=SCHEMA, timeout=5)
    write_rows(leader, "t", 0, 100, 1)
    wait_uploaded(leader)
    s3.proxy.down()
    try:
        for version in range(2, 6):  # writes go on while the store is away
            write_rows(leader, "t", 0, 100, version)
        deadline = time.monotonic() + 20
        while leader.metrics()["quiver_object_store_upload_failures_total"] == 0:
            assert time.monotonic() < deadline, leader.log()
            time.sleep(0.1)
        # The lag is the age of the oldest change not uploaded: above 0 once a millisecond passed
        # (a slow build can read it within the same one).
        while (m := leader.metrics())["quiver_object_store_lag_seconds"] == 0:
            assert time.monotonic() < deadline, leader.log()
            time.sleep(0.05)
        assert m["quiver_object_store_uploaded_lsn"] < m["quiver_wal_last_lsn"]
        assert "object store upload failed; retrying" in leader.log()
    finally:
        s3.proxy.up()
    wait_uploaded(leader, timeout=90)  # resumed after the backoff
    expected = contents(leader, "t")
    kill(leader)
    time.sleep(1.2)
    node = start_server("--object-store", uri, *LEASE, data_dir=tmp_path / "fresh")
    assert contents(node, "t") == expected
    assert {row["v"] for row in expected.values()} == {5}


def test_a_second_leader_is_refused(start_server, store_uri, tmp_path):
    leader = start_server("--object-store", store_uri, "--upload-interval", "0.1")
    requests.put(f"{leader.url}/api/v1/table/t", json=SCHEMA, timeout=5)
    write_rows(leader, "t", 0, 10, 1)
    wait_uploaded(leader)
    # An empty node while the leader's lease is live.
    code, err = run_quiverd(tmp_path / "second", "--object-store", store_uri)
    assert code == 1 and "renewed its lease" in err and "--follow" in err, err
    # A node with data of its own, never uploaded there.
    other = tmp_path / "other"
    own = start_server(data_dir=other)
    requests.put(f"{own.url}/api/v1/table/mine", json=SCHEMA, timeout=5)
    assert own.stop() == 0
    code, err = run_quiverd(other, "--object-store", store_uri)
    assert code == 1 and "holds another data set" in err, err
    # The leader went on uploading, unharmed.
    write_rows(leader, "t", 0, 10, 2)
    assert wait_uploaded(leader)["quiver_object_store_fenced"] == 0


def test_damaged_objects_are_named_and_half_uploaded_sets_ignored(start_server, s3, tmp_path):
    uri = s3.uri("quiver-damaged/p")
    fs = s3.filesystem()
    leader = start_server("--object-store", uri, "--upload-interval", "0.1")
    requests.put(f"{leader.url}/api/v1/table/t", json=SCHEMA, timeout=5)
    write_rows(leader, "t", 0, 500, 1)
    wait_uploaded(leader)
    expected = contents(leader, "t")
    assert leader.stop() == 0
    # A set whose upload was cut short (objects, no manifest) is not used.
    with fs.open_output_stream("quiver-damaged/p/data/99999999/wal/00000000000000000001.wal/00000") as out:
        out.write(b"half an upload")
    node = start_server("--object-store", uri, data_dir=tmp_path / "a")
    assert contents(node, "t") == expected
    assert node.stop() == 0
    # A damaged part of the newest set: the bootstrap stops, naming it.
    infos = fs.get_file_info(pafs.FileSelector("quiver-damaged/p/data", recursive=True))
    wal = sorted(i.path for i in infos if "/wal/" in i.path and i.type == pafs.FileType.File
                 and "99999999" not in i.path)
    victim = wal[-1]
    with fs.open_input_file(victim) as f:
        data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF
    with fs.open_output_stream(victim) as out:
        out.write(bytes(data))
    code, err = run_quiverd(tmp_path / "b", "--object-store", uri)
    assert code == 1, err
    assert "fails its checksum" in err and victim.split("quiver-damaged/p/")[1] in err, err


def test_kill_during_uploads_and_during_restore(start_server, spawn_server, s3, tmp_path):
    uri = s3.uri("quiver-kills/p")
    leader = spawn_server("--object-store", uri, "--upload-interval", "0.05",
                          "--wal-segment-bytes", "16384", *LEASE)
    requests.put(f"{leader.url}/api/v1/table/t", json=SCHEMA, timeout=5)
    uploaded = 0  # every version up to it was acknowledged and then seen uploaded
    version = 0
    stop = time.monotonic() + random.uniform(1.0, 2.5)
    while time.monotonic() < stop:
        version += 1
        write_rows(leader, "t", 0, 200, version)
        if version % 7 == 0:  # now and then, until this version is uploaded
            wait_uploaded(leader)
            uploaded = version
    kill(leader)
    assert uploaded > 0
    time.sleep(1.2)
    # The first restore is killed part-way; the next start begins it again.
    ports = [str(port) for port in free_ports(3)]
    proc = subprocess.Popen(
        [str(QUIVERD), "--data-dir", str(tmp_path / "node"), "--object-store", uri, *LEASE,
         "--http-port", ports[0], "--flight-port", ports[1], "--resp-port", ports[2]],
        stderr=subprocess.DEVNULL)
    time.sleep(random.uniform(0.05, 0.4))
    proc.kill()
    proc.wait()
    time.sleep(1.2)
    node = start_server("--object-store", uri, *LEASE, data_dir=tmp_path / "node")
    rows = contents(node, "t")
    # Each batch is whole (one version everywhere) and not older than the last one uploaded.
    versions = {row["v"] for row in rows.values()}
    assert len(rows) == 200 and len(versions) == 1, versions
    assert uploaded <= versions.pop() <= version


def test_quiver_load_reads_object_storage(start_server, s3, tmp_path):
    """`quiver load` takes s3:// URIs like paths: a prefix of Parquet, Arrow IPC and CSV files."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    fs = s3.filesystem()
    fs.create_dir("quiver-load")
    with fs.open_output_stream("quiver-load/in/a.parquet") as out:
        pq.write_table(pa.table({"id": ["k1", "k2"], "v": [1, 2]}), out)
    with fs.open_output_stream("quiver-load/in/nested/b.arrow") as out:
        table = pa.table({"id": ["k3"], "v": [3]})
        with pa.ipc.new_file(out, table.schema) as writer:
            writer.write_table(table)
    with fs.open_output_stream("quiver-load/in/nested/c.csv") as out:
        pacsv.write_csv(pa.table({"id": ["k4", "k5"], "v": [4, 5]}), out)
    server = start_server()
    requests.put(f"{server.url}/api/v1/table/t", json={
        "key": "id", "columns": {"id": {"dtype": "utf8"}, "v": {"dtype": "int64"}}}, timeout=5)
    cli = [str(QUIVER_CLI), "--url", server.url, "load", "t"]
    done = subprocess.run(cli + [s3.uri("quiver-load/in")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "5 rows written" in done.stdout
    with quiver.connect(server.url) as db:
        assert db.read("t", ["k1", "k3", "k5"]).to_arrow().column("v").to_pylist() == [1, 3, 5]
    # One file by its URI; a missing one named.
    done = subprocess.run(cli + [s3.uri("quiver-load/in/a.parquet")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "2 rows written" in done.stdout, done.stderr
    done = subprocess.run(cli + [s3.uri("quiver-load/nothing")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and "no such file or directory" in done.stderr, done.stderr


def test_quiver_export_streams_a_table_to_object_storage(start_server, s3, tmp_path):
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    server = start_server()
    requests.put(f"{server.url}/api/v1/table/t", json=SCHEMA, timeout=5)
    write_rows(server, "t", 0, 5000, 7)
    expected = contents(server, "t")
    fs = s3.filesystem()
    fs.create_dir("quiver-export")
    cli = [str(QUIVER_CLI), "--url", server.url, "export", "t"]
    for destination, read in (
            (s3.uri("quiver-export/t.parquet"),
             lambda: pq.read_table(fs.open_input_file("quiver-export/t.parquet"))),
            (s3.uri("quiver-export/t.arrows"),
             lambda: ipc.open_stream(fs.open_input_file("quiver-export/t.arrows")).read_all()),
            (str(tmp_path / "t.parquet"), lambda: pq.read_table(tmp_path / "t.parquet"))):
        done = subprocess.run(cli + [destination, "--quiet"], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        rows = read().to_pylist()
        assert {row.pop("id"): row for row in rows} == expected
    # A missing table: a clear error, and nothing left behind.
    done = subprocess.run([str(QUIVER_CLI), "--url", server.url, "export", "nope",
                           s3.uri("quiver-export/nope.parquet")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "does not exist" in done.stderr, done.stderr
    left = [i.path for i in fs.get_file_info(pafs.FileSelector("quiver-export", recursive=True))]
    assert sorted(left) == ["quiver-export/t.arrows", "quiver-export/t.parquet"], left


# --- tables synced from Parquet prefixes ---------------------------------------------------------

def wait_source(server: Server, table: str, until, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = requests.get(f"{server.url}/api/v1/table/{table}/source", timeout=5).json()
        if until(status):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def put_parquet(fs, path: str, first: int, count: int, version: int, **extra) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = range(first, first + count)
    columns = {"id": [f"k{i}" for i in ids], "v": [version] * count,
               "x": pa.array([i / 4 for i in ids], pa.float32())}
    columns.update(extra)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    # Written under another name, then renamed: a poll never sees half a file.
    with fs.open_output_stream(path + ".tmp") as out:
        pq.write_table(pa.table(columns), out, row_group_size=max(1, count // 3))
    fs.move(path + ".tmp", path)


@pytest.mark.parametrize("where", ["s3", "dir"])
def test_a_table_follows_a_parquet_prefix_once_per_file(start_server, spawn_server, s3, tmp_path,
                                                        where):
    import pyarrow.fs as pafs_module

    if where == "s3":
        fs, root = s3.filesystem(), f"quiver-src-{random.getrandbits(32):08x}/users"
        fs.create_dir(root.split("/")[0])
        uri = s3.uri(root + "/")
    else:
        fs, root = pafs_module.LocalFileSystem(), str(tmp_path / "users")
        fs.create_dir(root)
        uri = root
    put_parquet(fs, f"{root}/part-0001.parquet", 0, 300, 1)
    put_parquet(fs, f"{root}/2026/part-0000.parquet", 300, 200, 1)
    with fs.open_output_stream(f"{root}/_SUCCESS") as out:
        out.write(b"")
    server = spawn_server()
    requests.put(f"{server.url}/api/v1/table/t", json=SCHEMA, timeout=5)
    with quiver.connect(server.url) as db:
        status = db.sync_table("t", uri, poll_seconds=0.2)
        assert status["poll_seconds"] == 0.2
    status = wait_source(server, "t", lambda s: s["files_loaded"] == 2)
    assert [f["path"] for f in status["files"]] == ["2026/part-0000.parquet", "part-0001.parquet"]
    assert status["rows_loaded"] == 500 and status["last_error"] == ""
    assert len(contents(server, "t")) == 500
    # A new file is loaded once; a file that does not fit is refused (named), not retried.
    put_parquet(fs, f"{root}/part-0002.parquet", 500, 100, 2)
    put_parquet(fs, f"{root}/part-0003.parquet", 0, 10, 9, extra_column=[1] * 10)
    status = wait_source(server, "t", lambda s: s["files_loaded"] == 3 and s["files_refused"] == 1)
    refused = [f for f in status["files"] if "error" in f]
    assert refused[0]["path"] == "part-0003.parquet"
    assert "column 'extra_column' is not in the table" in refused[0]["error"]
    rows = contents(server, "t")
    assert len(rows) == 600 and rows["k0"]["v"] == 1 and rows["k550"]["v"] == 2
    time.sleep(0.5)
    assert wait_source(server, "t", lambda s: True)["files_refused"] == 1
    # Loaded files are remembered across a crash: a key changed since is not loaded over again.
    write_rows(server, "t", 0, 1, 42)
    server.process.kill()
    server.process.wait()
    again = spawn_server(data_dir=server.data_dir)
    status = wait_source(again, "t", lambda s: s["last_poll_ms"] > 0)
    assert status["files_loaded"] == 3 and status["rows_loaded"] == 600
    time.sleep(0.5)
    assert contents(again, "t")["k0"]["v"] == 42
    # Unbound: new files are left alone; the CLI shows and stops it.
    done = subprocess.run([str(QUIVER_CLI), "--url", again.url, "sync", "t", "--status"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and json.loads(done.stdout)["files_loaded"] == 3, done.stderr
    done = subprocess.run([str(QUIVER_CLI), "--url", again.url, "sync", "t", "--stop"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    put_parquet(fs, f"{root}/part-0004.parquet", 1000, 5, 3)
    time.sleep(0.6)
    assert "k1000" not in contents(again, "t", keys=1100)
    assert requests.get(f"{again.url}/api/v1/table/t/source").status_code == 404
    assert again.stop() == 0


def test_source_requests_are_checked(start_server, tmp_path):
    server = start_server()
    requests.put(f"{server.url}/api/v1/table/t", json=SCHEMA, timeout=5)
    url = f"{server.url}/api/v1/table"
    for body, status, text in (
            ({"uri": str(tmp_path)}, 404, "does not exist"),
            ({}, 400, "needs \"uri\""),
            ({"uri": str(tmp_path), "poll_seconds": 0}, 400, "poll_seconds"),
            ({"uri": str(tmp_path), "extra": 1}, 400, "no field 'extra'"),
            ({"uri": "nope://x/y"}, 400, "nope")):
        target = f"{url}/nope/source" if status == 404 else f"{url}/t/source"
        r = requests.put(target, json=body, timeout=5)
        assert r.status_code == status and text in r.json()["error"], (body, r.text)
    assert requests.delete(f"{url}/t/source").status_code == 404
    # A source that cannot be listed says so, and keeps polling.
    r = requests.put(f"{url}/t/source", json={"uri": str(tmp_path / "missing-dir"),
                                               "poll_seconds": 0.1}, timeout=5)
    assert r.status_code == 200
    status = wait_source(server, "t", lambda s: s["last_poll_ms"] > 0)
    assert status["files_loaded"] == 0


# --- read-only followers ---------------------------------------------------------------------------

def wait_followed(follower: Server, leader: Server, timeout: float = 30) -> dict[str, float]:
    """Until the follower applied everything the leader uploaded."""
    target = wait_uploaded(leader)["quiver_object_store_uploaded_lsn"]
    deadline = time.monotonic() + timeout
    while True:
        m = follower.metrics()
        if m["quiver_follow_applied_lsn"] >= target:
            return m
        assert time.monotonic() < deadline, f"{m}\n{follower.log()}"
        time.sleep(0.05)


def test_followers_serve_the_leaders_changes_read_only(start_server, store_uri, tmp_path):
    import pyarrow.flight as flight

    leader = start_server("--object-store", store_uri, "--upload-interval", "0.1",
                          "--wal-segment-bytes", "16384")
    requests.put(f"{leader.url}/api/v1/table/t", json=SCHEMA, timeout=5)
    write_rows(leader, "t", 0, 300, 1)
    wait_uploaded(leader)
    follower = start_server("--follow", store_uri, "--follow-interval", "0.1",
                            data_dir=tmp_path / "follower")
    assert contents(follower, "t") == contents(leader, "t")
    # New writes, a new table, a drop, deletes, keys and a snapshot on the leader all follow.
    write_rows(leader, "t", 200, 300, 2)
    requests.post(f"{leader.url}/api/v1/table/t/delete", json={"keys": ["k0"]}, timeout=5)
    requests.put(f"{leader.url}/api/v1/table/u", json=SCHEMA, timeout=5)
    write_rows(leader, "u", 0, 10, 3)
    redis.Redis(port=leader.resp_port).set("greeting", "hello")
    assert requests.post(f"{leader.url}/api/v1/admin/snapshot", json={},
                         timeout=30).status_code == 200
    write_rows(leader, "t", 400, 200, 4)  # after the snapshot retired the leader's segments
    requests.put(f"{leader.url}/api/v1/table/gone", json=SCHEMA, timeout=5)
    requests.delete(f"{leader.url}/api/v1/table/gone", timeout=5)
    m = wait_followed(follower, leader)
    assert m["quiver_follow_stuck"] == 0 and m["quiver_follow_seconds_behind"] < 5
    assert contents(follower, "t") == contents(leader, "t")
    assert contents(follower, "u") == contents(leader, "u")
    assert "gone" not in requests.get(f"{follower.url}/api/v1/table", timeout=5).json()
    assert redis.Redis(port=follower.resp_port).get("greeting") == b"hello"
    # Every change sent to the follower is refused, naming its role; reads go on.
    r = requests.put(f"{follower.url}/api/v1/table/t/write",
                     json={"columns": {"id": ["x"], "v": [1]}}, timeout=5)
    assert r.status_code == 403 and r.json()["code"] == "READ_ONLY", r.text
    assert "read-only follower" in r.json()["error"]
    assert requests.put(f"{follower.url}/api/v1/table/new", json=SCHEMA,
                        timeout=5).status_code == 403
    assert requests.post(f"{follower.url}/api/v1/admin/snapshot", json={},
                         timeout=5).status_code == 403
    with pytest.raises(redis.exceptions.ReadOnlyError, match="read-only follower"):
        redis.Redis(port=follower.resp_port).set("k", "v")
    with quiver.connect(follower.flight_url) as db:
        with pytest.raises(quiver.ReadOnly):
            db.write("t", {"id": ["x"], "v": [1]})
        assert db.read("t", ["k1", "k250"]).to_arrow().column("v").to_pylist() == [1, 2]
    with quiver.connect(follower.url) as db:
        with pytest.raises(quiver.ReadOnly):
            db.delete("t", ["k1"])
    # A restart rebuilds it from the store.
    assert follower.stop() == 0
    again = start_server("--follow", store_uri, "--follow-interval", "0.1",
                         data_dir=tmp_path / "follower")
    assert contents(again, "t") == contents(leader, "t")


def test_a_follower_needs_an_empty_directory_and_not_both_roles(start_server, store_uri,
                                                                  tmp_path):
    own = start_server(data_dir=tmp_path / "own")
    requests.put(f"{own.url}/api/v1/table/mine", json=SCHEMA, timeout=5)
    assert own.stop() == 0
    code, err = run_quiverd(tmp_path / "own", "--follow", store_uri)
    assert code == 1 and "holds data of its own" in err, err
    code, err = run_quiverd(tmp_path / "x", "--follow", store_uri, "--object-store", store_uri)
    assert code == 2 and "not both" in err, err
    # Nothing uploaded yet: it starts empty and waits for the leader's first backup.
    follower = start_server("--follow", store_uri, "--follow-interval", "0.1",
                            data_dir=tmp_path / "f")
    leader = start_server("--object-store", store_uri, "--upload-interval", "0.1")
    requests.put(f"{leader.url}/api/v1/table/t", json=SCHEMA, timeout=5)
    write_rows(leader, "t", 0, 20, 1)
    wait_followed(follower, leader)
    assert contents(follower, "t") == contents(leader, "t")


def test_a_follower_that_fell_too_far_behind_says_so(start_server, s3, tmp_path):
    uri = s3.uri("quiver-stuck/p")
    leader = start_server("--object-store", uri, "--upload-interval", "0.05",
                          "--wal-segment-bytes", "8192")
    requests.put(f"{leader.url}/api/v1/table/t", json=SCHEMA, timeout=5)
    write_rows(leader, "t", 0, 50, 1)
    wait_uploaded(leader)
    follower = start_server("--follow", uri, "--follow-interval", "0.1", data_dir=tmp_path / "f")
    before = contents(follower, "t")
    follower.process.send_signal(signal.SIGSTOP)  # it misses what follows
    try:
        for version in range(2, 8):
            write_rows(leader, "t", 0, 50, version)
            wait_uploaded(leader)
            requests.post(f"{leader.url}/api/v1/admin/snapshot", json={}, timeout=30)
            write_rows(leader, "t", 50, 10, version)
            wait_uploaded(leader)
    finally:
        follower.process.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 20
    while follower.metrics()["quiver_follow_stuck"] != 1:
        assert time.monotonic() < deadline, follower.log()
        time.sleep(0.1)
    assert "no longer in the store" in follower.log()
    assert contents(follower, "t") == before  # it serves what it has
    assert follower.stop() == 0
    again = start_server("--follow", uri, data_dir=tmp_path / "f")
    assert contents(again, "t") == contents(leader, "t")


def test_wrong_credentials_are_named(start_server, tmp_path):
    with S3Server(tmp_path / "moto.log", check_credentials=True) as s3:
        uri = s3.uri("quiver-creds/p")
        code, err = run_quiverd(tmp_path / "empty", "--object-store", uri)
        assert code == 1 and "cannot bootstrap the empty data directory" in err, err
        assert "quiver-creds" in err and any(
            word in err for word in ("InvalidAccessKeyId", "ACCESS_DENIED", "403", "credentials")), err
        # A node with data of its own starts, and says why it cannot upload.
        own = start_server(data_dir=tmp_path / "own")
        requests.put(f"{own.url}/api/v1/table/t", json=SCHEMA, timeout=5)
        assert own.stop() == 0
        leader = start_server("--object-store", uri, data_dir=tmp_path / "own")
        assert "object store not reachable at start" in leader.log()
        write_rows(leader, "t", 0, 10, 1)  # writes go on
        assert leader.metrics()["quiver_object_store_uploaded_lsn"] == 0
