"""Durability of the key-value keyspace of the real quiverd (docs/durability.md, docs/resp.md):
SIGKILL under pipelined redis-py writers, snapshots of the keyspace, TTLs across restarts, and the
in-memory-only mode."""

import signal
import threading
import time

import pytest
import redis
import requests

from quiverd import Server


def connect(server: Server) -> redis.Redis:
    return redis.Redis(port=server.resp_port, decode_responses=True)


def writer(server: Server, number: int, acked: list, stop: threading.Event) -> None:
    """Writes w<number>:<n> = n and h<number>.last = n in pipelines of 20 until stopped or
    disconnected; acked[number] is the last n whose pipeline was answered."""
    client = connect(server)
    n = 0
    try:
        while not stop.is_set():
            pipe = client.pipeline(transaction=False)
            for _ in range(10):
                n += 1
                pipe.set(f"w{number}:{n}", n, ex=100_000 if n % 3 == 0 else None)
                pipe.hset(f"h{number}", mapping={"last": n, f"f{n % 7}": n})
            pipe.execute()
            acked[number] = n
    except (redis.ConnectionError, ConnectionResetError, OSError):
        pass
    finally:
        client.close()


def test_sigkill_under_pipelined_writers_keeps_every_acknowledged_change(tmp_path):
    data = tmp_path / "data"
    flags = ("--snapshot-wal-bytes", "256kb", "--wal-segment-bytes", "64kb")
    for cycle in range(3):
        server = Server(tmp_path, *flags, data_dir=data)
        client = connect(server)
        if cycle > 0:  # what the last cycle acknowledged is there
            for number, last in enumerate(acked):
                if last == 0:
                    continue
                values = client.mget([f"w{number}:{n}" for n in range(1, last + 1)])
                missing = [n + 1 for n, v in enumerate(values) if v != str(n + 1)]
                assert not missing, f"cycle {cycle}: writer {number} lost {missing[:5]}"
                assert int(client.hget(f"h{number}", "last")) >= last
                assert 99_000 < client.ttl(f"w{number}:3") <= 100_000
                assert client.ttl(f"w{number}:1") == -1
            client.flushall()
        acked = [0, 0]
        stop = threading.Event()
        threads = [threading.Thread(target=writer, args=(server, i, acked, stop)) for i in range(2)]
        for thread in threads:
            thread.start()
        # Both writers have written (a condition, not a time: a busy machine is slower), then
        # the kill lands at a moment that moves from cycle to cycle.
        deadline = time.monotonic() + 30
        while not all(a > 0 for a in acked) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2 + 0.3 * cycle)
        server.process.send_signal(signal.SIGKILL)
        stop.set()
        for thread in threads:
            thread.join()
        server.stop()
        assert all(a > 0 for a in acked), acked
    server = Server(tmp_path, *flags, data_dir=data)
    assert "keyspace snapshot loaded" in server.log() or "replayed" in server.log()
    assert server.stop() == 0


def test_snapshot_of_the_keyspace_and_restart(tmp_path):
    data = tmp_path / "data"
    server = Server(tmp_path, data_dir=data)
    client = connect(server)
    pipe = client.pipeline(transaction=False)
    for i in range(10_000):
        pipe.set(f"k{i}", "v" * (i % 50))
        if i % 10 == 0:
            pipe.hset(f"h{i}", mapping={"a": i, "b": "x"})
    pipe.execute()
    report = requests.post(server.url + "/api/v1/admin/snapshot").json()
    assert report["keyspace"]["written"] is True
    assert report["keyspace"]["keys"] == 11_000
    assert len(list((data / "snapshots").glob("keyspace-*.kv"))) == 1
    client.set("after", "snapshot")
    client.delete("k0")
    client.set("short", "lived", px=300)
    client.set("long", "lived", ex=1000)
    assert server.stop() == 0
    time.sleep(0.4)  # "short" is due before the restart
    server = Server(tmp_path, data_dir=data)
    client = connect(server)
    assert "keyspace snapshot loaded" in server.log()
    assert client.dbsize() == 11_001
    assert client.get("k0") is None and client.get("k1") == "v" and client.get("after") == "snapshot"
    assert client.hgetall("h10") == {"a": "10", "b": "x"}
    assert client.get("short") is None
    assert 990 < client.ttl("long") <= 1000
    # Unchanged since: no new file, and the log before it is let go.
    report = requests.post(server.url + "/api/v1/admin/snapshot").json()
    assert report["keyspace"]["written"] is True  # the changes after the first one
    report = requests.post(server.url + "/api/v1/admin/snapshot").json()
    assert report["keyspace"]["written"] is False
    assert len(list((data / "snapshots").glob("keyspace-*.kv"))) == 1
    assert server.stop() == 0


def test_kv_memory_only_starts_empty_and_keeps_tables(tmp_path):
    data = tmp_path / "data"
    server = Server(tmp_path, "--kv-memory-only", data_dir=data)
    client = connect(server)
    client.set("cached", "1")
    report = requests.post(server.url + "/api/v1/admin/snapshot").json()
    assert "keyspace" not in report
    assert server.stop() == 0
    server = Server(tmp_path, data_dir=data)
    assert connect(server).dbsize() == 0
    assert server.stop() == 0


@pytest.mark.parametrize("fsync", ["everysec", "always"])
def test_full_disk_refuses_changes_with_a_clear_error_and_keeps_reads(tmp_path, fsync):
    """RLIMIT_FSIZE makes log writes past 256 KiB fail (EFBIG) like a full disk."""
    data = tmp_path / "d"
    full = Server(tmp_path, "--fsync", fsync, "--snapshot-wal-bytes", "0", "--wal-segment-bytes",
                  "1gb", data_dir=data, file_size_limit=256 << 10)
    try:
        client = connect(full)
        acked, failure = 0, None
        for n in range(1, 100_000):
            try:
                client.set(f"k{n}", "v" * 100)
                acked = n
            except redis.ResponseError as e:
                failure = e
                break
        assert failure is not None and acked > 100
        assert "MISCONF the change was applied in memory but could not be logged" in str(failure)
        assert "File too large" in str(failure)
        with pytest.raises(redis.ResponseError, match="MISCONF changes are refused while the "
                           "write-ahead log cannot be written"):
            client.set("refused", "1")
        assert client.get("refused") is None, "a refused change changes nothing"
        assert client.get("k1") == "v" * 100, "reads go on"
        # Space again: the buffered change is written within a second, then changes go on.
        full.lift_file_size_limit()
        deadline = time.monotonic() + 5
        while True:
            try:
                client.set("after", "space")
                break
            except redis.ResponseError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        client.close()
    finally:
        full.stop(signal.SIGKILL)
    server = Server(tmp_path, data_dir=data)
    client = connect(server)
    assert client.get("after") == "space"
    assert client.get(f"k{acked + 1}") == "v" * 100, "the buffered change was written"
    values = client.mget([f"k{n}" for n in range(1, acked + 1)])
    assert all(v == "v" * 100 for v in values)
    assert client.get("refused") is None
    assert server.stop() == 0
