"""Durability of the real quiverd: SIGKILL at random moments under concurrent writers, corrupt and
missing files, a disk that fills up, snapshots while writes and reads go on (docs/durability.md).

CRASH_CYCLES (default 20) sets how many kill-and-restart cycles the crash test runs; `make soak`
runs many more."""

import os
import pathlib
import random
import shutil
import signal
import subprocess
import threading
import time

import pyarrow as pa
import pytest
import redis
import requests

import quiver
from quiverd import QUIVERD, Server, free_ports

SCHEMA = pa.schema([("id", pa.string()), ("v", pa.int64()), ("s", pa.string()),
                    ("emb", pa.list_(pa.float32(), 4))])
KEYS_PER_WRITER = 30  # rewritten by every batch of a writer
NEW_PER_BATCH = 5     # keys only that batch writes


def batch(writer: int, number: int) -> pa.Table:
    """Writer `writer`'s batch `number`: its fixed keys and NEW_PER_BATCH new ones, all with
    v = number, so that a half-applied batch shows as keys with different values."""
    ids = [f"w{writer}-k{i}" for i in range(KEYS_PER_WRITER)]
    ids += [f"w{writer}-b{number}-{j}" for j in range(NEW_PER_BATCH)]
    n = len(ids)
    return pa.table({
        "id": ids,
        "v": [number] * n,
        "s": [f"{number}:" + "x" * ((number * 7 + i) % 40) for i in range(n)],
        "emb": [[float(number), float(i), 0.5, -1.0] for i in range(n)],
    }, schema=SCHEMA)


def start(tmp_path, data_dir, *args) -> Server:
    return Server(tmp_path, *args, data_dir=data_dir)


def run_quiverd(data_dir, *args, timeout=30):
    """quiverd expected to fail at start: (exit status, stderr)."""
    http_port, flight_port = free_ports(2)
    done = subprocess.run(
        [str(QUIVERD), "--data-dir", str(data_dir), "--http-port", str(http_port),
         "--flight-port", str(flight_port), "--resp-port", "0", *args],
        capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stderr


def check_writer(db: quiver.Client, writer: int, acked: int, sent: int) -> int:
    """Every acknowledged batch of `writer` is there, none half-applied; returns the last one."""
    fixed = [f"w{writer}-k{i}" for i in range(KEYS_PER_WRITER)]
    result = db.read("t", fixed, ["v"])
    values = result.to_pandas()["v"].tolist()
    found = result.found.tolist()
    if not any(found):
        assert acked < 0, f"writer {writer}: batch {acked} was acknowledged but nothing is there"
        return -1
    assert all(found), f"writer {writer}: a batch is half-applied: {found}"
    last = values[0]
    assert all(v == last for v in values), f"writer {writer}: half-applied batches: {values}"
    assert acked <= last <= sent, f"writer {writer}: has batch {last}; acked {acked}, sent {sent}"
    new = [f"w{writer}-b{b}-{j}" for b in range(last + 1) for j in range(NEW_PER_BATCH)]
    present = db.read("t", new, ["v"]).found.tolist()
    assert all(present), f"writer {writer}: new keys of batches up to {last} are missing"
    absent = [f"w{writer}-b{last + 1}-{j}" for j in range(NEW_PER_BATCH)]
    assert not any(db.read("t", absent, ["v"]).found.tolist())
    return last


def test_sigkill_under_concurrent_writers_keeps_acknowledged_writes(tmp_path):
    cycles = int(os.environ.get("CRASH_CYCLES", "20"))
    rng = random.Random(int(os.environ.get("CRASH_SEED", "7")))
    data = tmp_path / "data"
    # Small segments and snapshot threshold: kills land during rotations and snapshots too.
    args = ("--wal-segment-bytes", "64kb", "--snapshot-wal-bytes", "256kb")
    server = start(tmp_path, data, "--fsync", "always", *args)
    with quiver.connect(server.url) as db:
        db.create_table("t", SCHEMA, key="id")
    writers = 3
    next_batch = [0] * writers
    acked = [-1] * writers
    for cycle in range(cycles):
        sent = [-1] * writers
        stop = threading.Event()

        def write(w: int) -> None:
            url = server.flight_url if w == 0 else server.url  # Flight DoPut and HTTP
            try:
                with quiver.connect(url, timeout=5) as client:
                    while not stop.is_set():
                        number = next_batch[w]
                        sent[w] = number
                        client.write("t", batch(w, number))
                        acked[w] = number
                        next_batch[w] = number + 1
            except (quiver.QuiverError, OSError):
                pass  # the server died under us

        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.05, 0.6))
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        # Both policies keep every acknowledged write through a process crash.
        policy = "always" if cycle % 2 == 0 else "everysec"
        server = start(tmp_path, data, "--fsync", policy, *args)
        with quiver.connect(server.url) as db:
            for w in range(writers):
                last = check_writer(db, w, acked[w], max(sent[w], acked[w]))
                acked[w] = last
                next_batch[w] = last + 1
    assert sum(next_batch) > writers * 3, f"too few batches were written: {next_batch}"
    log = server.log()
    assert "msg=recovered" in log
    assert server.stop() == 0


def test_a_second_quiverd_on_the_same_directory_is_refused(start_server):
    server = start_server()
    code, stderr = run_quiverd(server.data_dir)
    assert code == 1
    assert f"data directory '{server.data_dir}' is in use (locked by pid" in stderr


def write_some(server: Server, batches: int) -> None:
    with quiver.connect(server.url) as db:
        db.create_table("t", SCHEMA, key="id")
        for number in range(batches):
            db.write("t", batch(0, number))


def values_of(db: quiver.Client, keys):
    """Column v of table t for `keys`; None where a key is missing."""
    result = db.read("t", keys, ["v"])
    return [int(v) if f else None for v, f in zip(result.to_pandas()["v"], result.found.tolist())]


def read_v(server: Server, keys):
    with quiver.connect(server.url) as db:
        return values_of(db, keys)


def segments(data_dir):
    return sorted((data_dir / "wal").glob("*.wal"))


def test_corrupt_log_record_stops_the_start_naming_file_and_offset(tmp_path):
    server = start(tmp_path, tmp_path / "d")
    write_some(server, 6)
    server.stop()
    segment = segments(tmp_path / "d")[0]
    content = bytearray(segment.read_bytes())
    middle = len(content) // 2
    content[middle] ^= 0x01
    segment.write_bytes(bytes(content))
    code, stderr = run_quiverd(tmp_path / "d")
    assert code == 1, stderr
    assert f"write-ahead log '{segment}' is corrupt at offset" in stderr
    assert "--wal-truncate-corrupt" in stderr
    assert segment.read_bytes() == bytes(content), "a refused start changes nothing"
    # The operator's flag cuts the log at the damaged record: earlier batches stay.
    server = start(tmp_path, tmp_path / "d", "--wal-truncate-corrupt")
    assert "write-ahead log: dropped" in server.log()
    values = read_v(server, ["w0-k0"] + [f"w0-b{b}-0" for b in range(6)])
    assert values[0] is not None and 0 <= values[0] < 5
    assert values[1:values[0] + 2] == list(range(values[0] + 1))
    assert values[values[0] + 2:] == [None] * (5 - values[0])
    assert server.stop() == 0
    # From then on it starts without the flag.
    server = start(tmp_path, tmp_path / "d")
    assert read_v(server, ["w0-k0"]) == [values[0]]
    assert server.stop() == 0


def test_torn_final_record_is_dropped_with_a_warning(tmp_path):
    server = start(tmp_path, tmp_path / "d")
    write_some(server, 3)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    segment = segments(tmp_path / "d")[-1]
    with open(segment, "r+b") as f:  # a crash in the middle of the last append
        f.truncate(segment.stat().st_size - 100)
    server = start(tmp_path, tmp_path / "d")
    assert "level=warn msg=\"write-ahead log: dropped\" what=\"a torn final record" in server.log()
    assert read_v(server, ["w0-k0", "w0-b1-0", "w0-b2-0"]) == [1, 1, None]
    assert server.stop() == 0


def test_missing_or_damaged_snapshot_and_damaged_catalog_stop_the_start(tmp_path):
    data = tmp_path / "d"
    server = start(tmp_path, data)
    write_some(server, 2)
    with quiver.connect(server.url) as db:
        [entry] = db.snapshot()
    assert entry["written"] and entry["rows"] == KEYS_PER_WRITER + 2 * NEW_PER_BATCH
    server.stop()
    [snapshot] = list((data / "snapshots").glob("*.arrow"))
    # Any Arrow tool reads a snapshot.
    assert pa.ipc.open_file(snapshot).read_all().num_rows == entry["rows"]
    original = snapshot.read_bytes()
    snapshot.unlink()
    code, stderr = run_quiverd(data)
    assert code == 1 and f"snapshot '{snapshot}' cannot be opened" in stderr, stderr
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0x01
    snapshot.write_bytes(bytes(damaged))
    code, stderr = run_quiverd(data)
    assert code == 1 and f"snapshot '{snapshot}' fails its checksum" in stderr, stderr
    snapshot.write_bytes(original)
    catalog = data / "catalog"
    text = catalog.read_bytes()
    catalog.write_bytes(text.replace(b'"rows": ', b'"rows": 1', 1))
    code, stderr = run_quiverd(data)
    assert code == 1 and f"catalog '{catalog}' fails its checksum" in stderr, stderr
    catalog.write_bytes(text)
    server = start(tmp_path, data)
    assert read_v(server, ["w0-k0"]) == [1]
    assert server.stop() == 0


def test_full_disk_fails_writes_with_a_clear_error_and_keeps_reads(tmp_path):
    """RLIMIT_FSIZE makes writes past 256 KiB fail (EFBIG) like a full disk."""
    data = tmp_path / "d"
    # Published tables live in memfds, which the file size limit bounds too: not published here.
    full = Server(tmp_path, "--fsync", "always", "--snapshot-wal-bytes", "0",
                  "--wal-segment-bytes", "1gb", "--log-level", "error", "--shm-socket", "off",
                  data_dir=data, file_size_limit=256 << 10)
    url = full.url
    try:
        db = quiver.connect(url)
        db.create_table("t", SCHEMA, key="id")
        acked, failure = -1, None
        for number in range(1000):
            try:
                db.write("t", batch(0, number))
                acked = number
            except quiver.QuiverError as e:
                failure = e
                break
        assert failure is not None and acked > 0
        assert "write-ahead log" in str(failure) and "File too large" in str(failure), failure
        assert "the write was not applied" in str(failure)
        # Larger than the whole limit: it cannot fit whatever room the failed write left.
        row = {"id": ["x"], "v": [1], "s": ["s" * (300 << 10)], "emb": [[1, 2, 3, 4]]}
        response = requests.put(url + "/api/v1/table/t/write", json={"columns": row})
        assert response.status_code == 503 and response.json()["code"] == "IO_ERROR"
        # Memory holds only what is durable; reads go on.
        assert values_of(db, ["w0-k0", f"w0-b{acked + 1}-0", "x"]) == [acked, None, None]
        assert requests.get(url + "/health").status_code == 200
        # Space again: writes go on.
        full.lift_file_size_limit()
        db.write("t", batch(0, acked + 1))
        db.close()
    finally:
        full.stop(signal.SIGKILL)
    server = start(tmp_path, data)
    assert read_v(server, ["w0-k0", f"w0-b{acked + 1}-0", f"w0-b{acked}-4"]) == [
        acked + 1, acked + 1, acked]
    assert server.stop() == 0


def test_snapshots_while_writes_and_reads_go_on(tmp_path):
    data = tmp_path / "d"
    server = start(tmp_path, data, "--wal-segment-bytes", "64kb", "--snapshot-wal-bytes", "0")
    with quiver.connect(server.url) as db:
        db.create_table("t", SCHEMA, key="id")
        db.write("t", batch(0, 0))
    stop = threading.Event()
    errors = []
    written = [0]

    def writer():
        with quiver.connect(server.url) as client:
            number = 1
            while not stop.is_set():
                client.write("t", batch(0, number))
                written[0] = number
                number += 1

    def reader():
        keys = [f"w0-k{i}" for i in range(KEYS_PER_WRITER)]
        with quiver.connect(server.flight_url) as client:
            while not stop.is_set():
                frame = client.read("t", keys).to_pandas()
                # Each row is whole: its string and embedding belong to its v.
                for v, s, emb in zip(frame["v"], frame["s"], frame["emb"]):
                    if not s.startswith(f"{v}:") or emb[0] != v:
                        errors.append((v, s, emb))

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    reports = []
    try:
        with quiver.connect(server.url) as http, quiver.connect(server.flight_url) as flight:
            for i in range(6):
                time.sleep(0.15)
                reports.append((http if i % 2 else flight).snapshot())
        cli = subprocess.run([os.sys.executable, "-m", "quiver.cli", "--url", server.url,
                              "snapshot", "t"], capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert cli.stdout.startswith("t: "), cli.stdout
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors[:3]
    assert written[0] > 6
    assert all(len(r) == 1 and r[0]["table"] == "t" for r in reports)
    assert sum(r[0]["written"] for r in reports) >= 3
    assert len(list((data / "snapshots").glob("*.arrow"))) == 1, "old snapshots are removed"
    metrics = requests.get(server.url + "/metrics").text
    assert "quiver_snapshots_total" in metrics and "quiver_wal_fsyncs_total" in metrics
    with quiver.connect(server.url) as db:
        keys = [f"w0-k{i}" for i in range(KEYS_PER_WRITER)]
        keys += [f"w0-b{b}-{j}" for b in range(written[0] + 1) for j in range(NEW_PER_BATCH)]
        before = db.read("t", keys).to_pandas()
    assert server.stop() == 0
    server = start(tmp_path, data)
    with quiver.connect(server.url) as db:
        after = db.read("t", keys).to_pandas()
    assert before.equals(after)
    assert server.stop() == 0


def test_snapshot_requests_are_checked(start_server):
    server = start_server()
    assert requests.post(server.url + "/api/v1/admin/snapshot").json() == {
        "tables": [],
        "keyspace": {"written": False, "keys": 0, "bytes": 0, "lsn": 0,
                     "seconds": pytest.approx(0, abs=1)},
        "wal_segments_removed": 0, "seconds": pytest.approx(0, abs=1)}
    response = requests.post(server.url + "/api/v1/admin/snapshot", json={"tables": ["nope"]})
    assert response.status_code == 404 and "nope" in response.json()["error"]
    response = requests.post(server.url + "/api/v1/admin/snapshot", json={"table": "x"})
    assert response.status_code == 400 and "no field 'table'" in response.json()["error"]
    response = requests.get(server.url + "/api/v1/admin/snapshot")
    assert response.status_code == 405
    with quiver.connect(server.flight_url) as db, pytest.raises(quiver.TableNotFound):
        db.snapshot(["nope"])


def test_a_version_1_data_directory_still_opens(tmp_path):
    # tests/fixtures/data-v1 was written by the quiverd of 6b5ff21 (make_data_dir_v1.py): a
    # catalog, table and keyspace snapshots, and a log of every record type after them.
    data = tmp_path / "data"
    shutil.copytree(pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "data-v1", data)
    server = Server(tmp_path, data_dir=data)
    try:
        _check_version_1_contents(server)
    finally:
        server.stop()


def _check_version_1_contents(server: Server) -> None:
    log = server.log()
    assert "level=warn" not in log and "level=error" not in log, log
    response = requests.post(server.url + "/api/v1/table/t/fetch",
                             json={"keys": ["a", "b", "c", "d"]})
    assert response.status_code == 200, response.text
    columns = response.json()["columns"]
    assert columns["n"] == [1, 20, None, 4]
    assert columns["score"] == [0.5, 1.5, None, None]
    assert columns["tags"] == ["x", None, None, None]
    assert columns["emb"] == [[1, 2, 3, 4], [0.5, 0.25, 0, -1], None, None]
    assert list(requests.get(server.url + "/api/v1/table").json()) == ["t"]
    kv = redis.Redis(port=server.resp_port, decode_responses=True)
    assert kv.get("s") == "before the snapshot, and after"
    assert kv.hgetall("h") == {"g": "2"}
    assert kv.ttl("ttl") > 9 * 365 * 86400
    assert kv.get("deleted") is None
    assert kv.dbsize() == 3
