"""Tables larger than memory on quiverd's disk tier (docs/tiering.md): rows the memory limit takes
move to --tier-dir instead of being dropped, and every front end reads them as it reads rows in
memory; a restart (clean or kill -9) rebuilds the tier from the snapshot and the log."""

import signal

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import redis
import requests

import quiver

SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), ("x", pa.int64()),
                    ("s", pa.string()), ("e", pa.list_(pa.float32(), 16))])
ROWS = 30_000


def rows(first, count, version=0):
    ids = np.arange(first, first + count, dtype=np.int64)
    embeddings = (np.repeat(ids, 16).astype(np.float32) + np.tile(np.arange(16), count)) / 7
    return pa.table({
        "id": ids,
        "x": ids * 10 + version,
        "s": [None if i % 13 == 0 else f"{i}-{version}-" + "s" * (i % 300) for i in ids],
        "e": pa.FixedSizeListArray.from_arrays(pa.array(embeddings, pa.float32()), 16),
    }, schema=SCHEMA)


def metric(server, name, labels=""):
    for line in requests.get(server.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + labels + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no {name}{labels} in /metrics")


def tiered(start, tmp_path, *extra, **options):
    return start("--maxmemory", "3mb", "--maxmemory-policy", "allkeys-lru",
                 "--tier-dir", str(tmp_path / "tier"), *extra, **options)


def load(db, count=ROWS, batch=2000):
    db.create_table("t", SCHEMA, key="id")
    for first in range(0, count, batch):
        db.write("t", rows(first, batch))


def test_rows_over_the_limit_stay_readable_through_every_front_end(start_server, tmp_path):
    server = tiered(start_server, tmp_path)
    with quiver.connect(server.url) as db, quiver.connect(server.flight_url) as flight_db:
        load(db)  # about 14 MB of rows through a 3 MiB limit
        want = rows(0, ROWS)
        cold = metric(server, "quiver_table_cold_rows", '{table="t"}')
        assert cold > ROWS / 2
        assert metric(server, "quiver_table_evicted_rows_total", '{table="t"}') == 0
        assert metric(server, "quiver_demoted_rows_total") >= cold
        assert metric(server, "quiver_memory_used_bytes") <= (3 << 20) + (64 << 10)
        keys = list(range(ROWS - 1, -1, -1)) + [ROWS, -5]  # every row, and two missing
        for client in (db, flight_db):
            table = client.read("t", keys).to_arrow()
            assert table.column("x").to_pylist() == [10 * k for k in keys[:ROWS]] + [None, None]
            assert table.column("s").to_pylist()[:ROWS] == want.column("s").to_pylist()[::-1]
            assert table.column("e").to_pylist()[:ROWS] == want.column("e").to_pylist()[::-1]
        # A scan (Flight's do_get of the whole table) meets every row once.
        reader = flight.connect(server.flight_url).do_get(flight.Ticket(b'{"table": "t"}'))
        scanned = reader.read_all().sort_by("id")
        assert scanned.num_rows == ROWS
        assert scanned.equals(want)
        # RESP reads a cold row as a hash.
        r = redis.Redis(port=server.resp_port)
        assert r.hget("t:5", "x") == b"50"
        info = r.info("tiering")
        assert info["cold_rows"] > 0 and info["tiered_tables"] == 1
        assert info["tier_reads"] > 0
    assert metric(server, "quiver_table_cold_read_seconds_count", '{table="t"}') > 0
    assert metric(server, "quiver_table_tier_reads_total", '{table="t"}') >= cold


def test_writes_and_deletes_of_cold_rows(start_server, tmp_path):
    server = tiered(start_server, tmp_path)
    with quiver.connect(server.url) as db:
        load(db, 20_000)
        # The oldest rows are the coldest: rewrite some of them, partially and wholly.
        db.write("t", rows(0, 1000, 1).select(["id", "x"]))
        db.write("t", rows(500, 1000, 2))
        db.delete("t", list(range(3000, 3500)))
        got = db.read("t", list(range(0, 4000))).to_arrow()
        x = got.column("x").to_pylist()
        s = got.column("s").to_pylist()
        for i in range(0, 4000):
            if 3000 <= i < 3500:
                assert x[i] is None
            elif i < 500:
                assert x[i] == 10 * i + 1 and s[i] == rows(i, 1, 0).column("s")[0].as_py()
            elif i < 1500:
                assert x[i] == 10 * i + 2 and s[i] == rows(i, 1, 2).column("s")[0].as_py()
            else:
                assert x[i] == 10 * i
        assert metric(server, "quiver_table_promoted_rows_total", '{table="t"}') > 0
        assert metric(server, "quiver_table_rows", '{table="t"}') == 19_500


@pytest.mark.parametrize("stop", ["sigterm", "kill9"])
def test_a_restart_rebuilds_the_tier_from_the_snapshot_and_the_log(spawn_server, tmp_path, stop):
    server = tiered(spawn_server, tmp_path)
    with quiver.connect(server.url) as db:
        load(db)
        db.write("t", rows(100, 50, 3))
    requests.post(server.url + "/api/v1/snapshot", json={}, timeout=60)
    with quiver.connect(server.url) as db:
        db.write("t", rows(200, 50, 4))  # after the snapshot: replayed from the log
    server.stop(signal.SIGTERM if stop == "sigterm" else signal.SIGKILL)
    assert list((tmp_path / "tier").glob("*.tier")) != [] or stop == "sigterm"
    again = tiered(spawn_server, tmp_path, data_dir=server.data_dir)
    assert metric(again, "quiver_table_cold_rows", '{table="t"}') > ROWS / 2
    assert metric(again, "quiver_memory_used_bytes") <= (3 << 20) + (64 << 10)
    with quiver.connect(again.url) as db:
        x = db.read("t", list(range(ROWS))).to_arrow().column("x").to_pylist()
    want = [10 * i + (3 if 100 <= i < 150 else 4 if 200 <= i < 250 else 0) for i in range(ROWS)]
    assert x == want
    assert again.stop() == 0


def test_a_full_tier_disk_fails_writes_clearly_and_reads_go_on(start_server, tmp_path):
    # Files past 4 MiB fail with EFBIG, as on a full disk; the log's segments stay below it, and
    # tables live in anonymous memory (a memfd is a file too).
    server = tiered(start_server, tmp_path, "--shm-socket", "off", "--wal-segment-bytes", "1mb",
                    "--snapshot-wal-bytes", "0", "--snapshot-interval", "0",
                    file_size_limit=4 << 20)
    with quiver.connect(server.url) as db:
        db.create_table("t", SCHEMA, key="id")
        written = 0
        with pytest.raises(quiver.OutOfMemory, match="disk tier takes no rows.*File too large"):
            for first in range(0, 100_000, 500):
                db.write("t", rows(first, 500))
                written += 500
        assert written > 0
        got = db.read("t", list(range(written))).to_arrow().column("x").to_pylist()
        assert got == [10 * i for i in range(written)], "every acknowledged row still reads"
        server.lift_file_size_limit()
        db.write("t", rows(written, 500))
        assert db.read("t", [written + 499]).to_arrow().column("x").to_pylist() == [
            10 * (written + 499)]


def test_shared_memory_readers_refuse_cold_rows_clearly(start_server, tmp_path):
    server = tiered(start_server, tmp_path)
    with quiver.connect(server.url) as db:
        load(db, 20_000)
        with quiver.connect(f"shm://{server.data_dir}") as shm:
            # The newest rows are in memory: read as over HTTP.
            hot = list(range(19_900, 20_000))
            assert shm.read("t", hot).to_arrow().equals(db.read("t", hot).to_arrow())
            # The oldest are on disk: not served from shared memory, and said so.
            with pytest.raises(quiver.Unsupported, match="disk tier.*through the server"):
                shm.read("t", [0, 19_999])
            assert db.read("t", [0]).to_arrow().column("x").to_pylist() == [0]
