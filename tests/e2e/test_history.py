"""The change history (quiverd --history, docs/offline.md) and quiver.offline.point_in_time,
against the real quiverd, a local directory and a real S3-compatible server (moto).

The strongest check: a random run of upserts (whole and partial, repeated keys), deletes, late
event-time writes and a drop, with every key read over HTTP after each change; the point-in-time
answer for each of those moments must equal what the server returned then. Then a brute-force
as-of join over the raw history rows agrees with point_in_time for random moments; the history
survives kill -9 without losing or repeating a row; the store away delays it and nothing more."""

import os
import random
import signal
import time

import pandas as pd
import pyarrow as pa
import pytest
import requests

import quiver
import quiver.offline as offline
from quiverd import Server
from s3server import S3Server, s3_env

os.environ.update({k: v for k, v in s3_env().items() if k.startswith("AWS_")})

FEAT = {"key": "id", "columns": {"id": {"dtype": "int64"}, "a": {"dtype": "float64"},
                                 "b": {"dtype": "utf8"}, "c": {"dtype": "int64"}}}
EV = {"key": "k", "columns": {"k": {"dtype": "utf8"},
                              "t": {"dtype": "timestamp[ms]", "nullable": False},
                              "v": {"dtype": "float64"}, "w": {"dtype": "int32"}},
      "event_time": "t"}
FEAT_KEYS = list(range(8))
EV_KEYS = [f"e{i}" for i in range(6)]
FAST = ("--history-interval", "0.1")


def now_us() -> int:
    return time.time_ns() // 1000


def stamp(us: int) -> pd.Timestamp:
    return pd.Timestamp(us, unit="us", tz="UTC")


def create(url: str, name: str, schema: dict) -> None:
    r = requests.put(f"{url}/api/v1/table/{name}", json=schema, timeout=5)
    assert r.status_code == 201, r.text


def read_all(db, name: str, keys: list) -> dict:
    """{key: row dict or None} as the server answers now (None for every key when the table is
    missing)."""
    try:
        result = db.read(name, keys)
    except quiver.TableNotFound:
        return {k: None for k in keys}
    rows = result.to_arrow().to_pylist()
    return {k: (row if found else None) for k, row, found in zip(keys, rows, result.found)}


def random_run(server: Server, rng: random.Random, steps: int) -> list:
    """Random changes to tables feat and ev; after each, (time, {table: {key: row}})."""
    moments = []
    base_event = now_us() // 1000
    with quiver.connect(server.url) as db:
        for step in range(steps):
            choice = rng.random()
            if step == steps // 2:
                db.drop_table("feat")
            elif step == steps // 2 + 3:
                create(server.url, "feat", FEAT)
            elif choice < 0.45:
                table = "feat"
                keys = [rng.choice(FEAT_KEYS) for _ in range(rng.randint(1, 4))]  # repeats too
                columns = {"id": keys}
                for name in rng.sample(["a", "b", "c"], rng.randint(1, 3)):
                    columns[name] = {"a": [rng.random() for _ in keys],
                                     "b": [rng.choice(["x", "y", None]) for _ in keys],
                                     "c": [rng.randint(-5, 5) for _ in keys]}[name]
                write(server, table, columns)
            elif choice < 0.6:
                try:
                    db.delete("feat", [rng.choice(FEAT_KEYS) for _ in range(rng.randint(1, 3))])
                except quiver.TableNotFound:
                    pass
            elif choice < 0.9:
                keys = rng.sample(EV_KEYS, rng.randint(1, 3))
                columns = {"k": keys}
                if rng.random() < 0.8:  # event times jump around: late rows are skipped
                    columns["t"] = [base_event + rng.randint(-50, 50) * 1000 for _ in keys]
                for name in rng.sample(["v", "w"], rng.randint(1, 2)):
                    columns[name] = {"v": [rng.random() for _ in keys],
                                     "w": [rng.randint(0, 100) for _ in keys]}[name]
                write(server, "ev", columns)
                base_event += 5000
            else:
                db.delete("ev", [rng.choice(EV_KEYS)])
            when = now_us()
            moments.append((when, {"feat": read_all(db, "feat", FEAT_KEYS),
                                   "ev": read_all(db, "ev", EV_KEYS)}))
            time.sleep(0.003)  # the next change is made in a later millisecond
    return moments


def write(server: Server, table: str, columns: dict) -> None:
    r = requests.put(f"{server.url}/api/v1/table/{table}/write", json={"columns": columns},
                     timeout=5)
    # 404: feat between its drop and re-creation; 400: a new key of ev without its event time
    # (refused whole: nothing changes, nothing is logged).
    assert r.status_code == 200 or r.status_code == 404 or \
        (r.status_code == 400 and "no value for non-nullable column 't'" in r.text), r.text


def entity_frame(moments: list, table: str, keys: list, key_name: str) -> pd.DataFrame:
    rows = [(k, stamp(when)) for when, _ in moments for k in keys]
    return pd.DataFrame({key_name: [k for k, _ in rows], "event_timestamp": [t for _, t in rows]})


def as_rows(frame: pd.DataFrame, columns: list) -> list:
    out = []
    for record in frame[columns].to_dict("records"):
        values = {c: (None if pd.isna(v) else v) for c, v in record.items()}
        out.append(None if all(v is None for v in values.values()) else values)
    return out


def expected_rows(moments: list, table: str, keys: list, columns: list) -> list:
    out = []
    for _, tables in moments:
        for k in keys:
            row = tables[table][k]
            out.append(None if row is None or all(row[c] is None for c in columns)
                       else {c: row[c] for c in columns})
    return out


def normalize(rows: list) -> list:
    """Timestamps as Unix ms, floats rounded: equal whatever path they came by."""
    def value(v):
        if isinstance(v, (pd.Timestamp,)) or hasattr(v, "timestamp"):
            return round(pd.Timestamp(v).tz_localize(None).value / 1e6
                         if pd.Timestamp(v).tzinfo else pd.Timestamp(v).value / 1e6)
        if isinstance(v, float):
            return round(v, 9)
        return v
    return [None if r is None else {c: value(v) for c, v in r.items()} for r in rows]


# --- brute force -------------------------------------------------------------------------------

def brute_force(history: pa.Table, key_name: str, columns: list, event_time: str | None,
                key, t: int, by: str):
    """The table's row for `key` at `t` (µs), straight from the history rows: replay, in the
    order `by` defines, every change made (or, by event time, stamped) at or before `t`."""
    rows = [r for r in history.to_pylist() if r[key_name] == key or r["_quiver_op"] == "drop"]

    def us(v):
        return None if v is None else int(pd.Timestamp(v).value // 1000)

    def when(r):
        return us(r["_quiver_applied_at"]) if by == "applied" or r["_quiver_op"] != "upsert" \
            else us(r["_quiver_event_time"])
    rows = [r for r in rows if when(r) <= t]
    if by == "applied":
        rows.sort(key=lambda r: (r["_quiver_lsn"], r["_quiver_row"]))
    else:
        rows.sort(key=lambda r: (when(r), r["_quiver_lsn"], r["_quiver_row"]))
    state = None  # {"values": {...}, "event": µs, "expires": µs or None}
    last_version_lsn = None
    for r in rows:
        if state is not None and by == "applied" and state["expires"] is not None \
                and state["expires"] <= us(r["_quiver_applied_at"]):
            state = None
        if r["_quiver_op"] in ("drop", "delete"):
            state = None
            last_version_lsn = r["_quiver_lsn"]
            continue
        omitted = set(r["_quiver_omitted"] or [])
        carries = event_time is not None and event_time not in omitted
        if by == "applied" and state is not None and carries and state["event"] is not None \
                and us(r["_quiver_event_time"]) < state["event"]:
            continue
        values = {c: (state["values"][c] if state is not None else None) if c in omitted
                  else r[c] for c in columns}
        state = {"values": values,
                 "event": us(r["_quiver_event_time"]) if carries
                 else (state["event"] if state else None),
                 "expires": us(r["_quiver_expires_at"])}
        last_version_lsn = r["_quiver_lsn"]
    if state is None:
        return None
    if by == "applied" and state["expires"] is not None and state["expires"] <= t:
        return None
    drops = [r["_quiver_lsn"] for r in history.to_pylist()
             if r["_quiver_op"] == "drop" and us(r["_quiver_applied_at"]) <= t]
    if drops and max(drops) > last_version_lsn:
        return None
    return None if all(v is None for v in state["values"].values()) else state["values"]


# --- tests -------------------------------------------------------------------------------------

def test_point_in_time_answers_what_the_server_served(start_server, tmp_path):
    history = f"file://{tmp_path}/history"
    server = start_server("--history", history, *FAST, "--wal-segment-bytes", "8192")
    create(server.url, "feat", FEAT)
    create(server.url, "ev", EV)
    before = now_us()
    moments = random_run(server, random.Random(7), 120)
    assert server.stop() == 0  # a clean stop writes the rest of the history
    assert "change history write failed" not in server.log()
    assert "a logged change is left out" not in server.log()

    cases = [("feat", FEAT_KEYS, "id", ["a", "b", "c"]), ("ev", EV_KEYS, "k", ["t", "v", "w"])]
    for table, keys, key_name, columns in cases:
        entities = entity_frame(moments, table, keys, key_name)
        answer = offline.point_in_time(history, table, entities, by="applied")
        assert list(answer.columns) == [key_name, "event_timestamp", *columns]
        assert normalize(as_rows(answer, columns)) == \
            normalize(expected_rows(moments, table, keys, columns)), table
        # Before the first change nothing existed.
        early = pd.DataFrame({key_name: keys, "event_timestamp": [stamp(before - 10_000)] * len(keys)})
        assert as_rows(offline.point_in_time(history, table, early, by="applied"), columns) == \
            [None] * len(keys)

    # Brute force over the raw rows agrees for random moments, both orders.
    rng = random.Random(11)
    start, end = moments[0][0] - 20_000, moments[-1][0] + 20_000
    for table, keys, key_name, columns in cases:
        rows = offline.read_history(history, table)
        event_time = "t" if table == "ev" else None
        queries = [(rng.choice(keys + ([99] if table == "feat" else ["nope"])),
                    rng.randint(start, end)) for _ in range(150)]
        entities = pd.DataFrame({key_name: [k for k, _ in queries],
                                 "event_timestamp": [stamp(t) for _, t in queries]})
        for by in ("applied", "event_time"):
            answer = as_rows(offline.point_in_time(history, table, entities, by=by), columns)
            expected = [brute_force(rows, key_name, columns, event_time, k, t, by)
                        for k, t in queries]
            assert normalize(answer) == normalize(expected), (table, by)


def test_history_rows_and_layout(start_server, tmp_path):
    root = tmp_path / "history"
    server = start_server("--history", str(root), *FAST)
    create(server.url, "feat", FEAT)
    write(server, "feat", {"id": [1, 2, 1], "a": [0.5, 1.5, 2.5], "b": ["x", "y", "z"], "c": [1, 2, 3]})
    write(server, "feat", {"id": [2], "c": [9]})
    requests.post(f"{server.url}/api/v1/table/feat/delete", json={"keys": [1]}, timeout=5)
    r = requests.put(f"{server.url}/api/v1/table/feat/write?ttl=60", timeout=5,
                     json={"columns": {"id": [3], "a": [1.0], "b": ["w"], "c": [0]}})
    assert r.status_code == 200
    # The lag gauge is set after the position moves: wait for both (an ASan build once read the
    # position caught up and the lag not yet 0).
    deadline = time.monotonic() + 20
    while True:
        m = server.metrics()
        if m["quiver_history_lsn"] >= m["quiver_wal_last_lsn"] and \
                m["quiver_history_lag_seconds"] == 0:
            break
        assert time.monotonic() < deadline, (m, server.log())
        time.sleep(0.05)
    assert m["quiver_history_rows_total"] == 6 and m["quiver_history_failures_total"] == 0
    assert m["quiver_history_skipped_total"] == 0
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))
    assert files and all(f.startswith("table=feat/date=") and "/hour=" in f for f in files), files
    rows = offline.read_history(str(root), "feat").sort_by([("_quiver_lsn", "ascending"),
                                                            ("_quiver_row", "ascending")])
    got = rows.select(["id", "a", "b", "c", "_quiver_op", "_quiver_row", "_quiver_omitted"]).to_pylist()
    assert got == [
        {"id": 1, "a": 0.5, "b": "x", "c": 1, "_quiver_op": "upsert", "_quiver_row": 0, "_quiver_omitted": None},
        {"id": 2, "a": 1.5, "b": "y", "c": 2, "_quiver_op": "upsert", "_quiver_row": 1, "_quiver_omitted": None},
        {"id": 1, "a": 2.5, "b": "z", "c": 3, "_quiver_op": "upsert", "_quiver_row": 2, "_quiver_omitted": None},
        {"id": 2, "a": None, "b": None, "c": 9, "_quiver_op": "upsert", "_quiver_row": 0,
         "_quiver_omitted": ["a", "b"]},
        {"id": 1, "a": None, "b": None, "c": None, "_quiver_op": "delete", "_quiver_row": 0,
         "_quiver_omitted": None},
        {"id": 3, "a": 1.0, "b": "w", "c": 0, "_quiver_op": "upsert", "_quiver_row": 0, "_quiver_omitted": None},
    ]
    applied = rows.column("_quiver_applied_at").to_pylist()
    expires = rows.column("_quiver_expires_at").to_pylist()
    assert expires[:5] == [None] * 5
    assert abs((expires[5] - applied[5]).total_seconds() - 60) < 0.01
    assert rows.column("_quiver_event_time").to_pylist() == applied
    assert rows.schema.metadata[b"quiver.key"] == b"id"
    # The entity frame comes back in its own kind, rows in order.
    table = pa.table({"id": [3, 2, 7], "ts": pa.array([time.time_ns() // 1000] * 3,
                                                      pa.timestamp("us"))})
    answer = offline.point_in_time(str(root), "feat", table, timestamp="ts", columns=["c"])
    assert isinstance(answer, pa.Table) and answer.column("c").to_pylist() == [0, 9, None]
    import polars
    answer = offline.point_in_time(str(root), "feat", polars.from_arrow(table), timestamp="ts")
    assert isinstance(answer, polars.DataFrame) and answer["b"].to_list() == ["w", "y", None]
    # A value older than max_age at the entity's time is null.
    later = pa.table({"id": [3], "ts": pa.array([time.time_ns() // 1000 + 120_000_000],
                                                 pa.timestamp("us"))})
    assert offline.point_in_time(str(root), "feat", later, max_age=60).column("a").to_pylist() == [None]
    assert offline.point_in_time(str(root), "feat", later, max_age=600).column("a").to_pylist() == [1.0]
    # The row's TTL: gone by the applied clock 120 s later, not by event time.
    assert offline.point_in_time(str(root), "feat", later, by="applied").column("a").to_pylist() == [None]


def test_bad_requests_are_named(start_server, tmp_path):
    root = tmp_path / "history"
    server = start_server("--history", str(root), *FAST)
    create(server.url, "feat", FEAT)
    write(server, "feat", {"id": [1], "a": [0.5]})
    assert server.stop() == 0
    now = pd.Timestamp.now(tz="UTC")
    frame = pd.DataFrame({"id": [1], "event_timestamp": [now]})
    with pytest.raises(quiver.TableNotFound, match="holds no changes of table 'nope'"):
        offline.point_in_time(str(root), "nope", frame)
    with pytest.raises(quiver.ColumnNotFound, match="no column 'zz'"):
        offline.point_in_time(str(root), "feat", frame, columns=["zz"])
    with pytest.raises(quiver.InvalidRequest, match="no key column 'user'"):
        offline.point_in_time(str(root), "feat", frame, key="user")
    with pytest.raises(quiver.InvalidRequest, match="must hold timestamps"):
        offline.point_in_time(str(root), "feat", pd.DataFrame({"id": [1], "event_timestamp": [1]}))
    with pytest.raises(quiver.InvalidRequest, match="does not convert to the table's key type"):
        offline.point_in_time(str(root), "feat",
                              pd.DataFrame({"id": ["x"], "event_timestamp": [now]}))
    with pytest.raises(quiver.InvalidRequest, match="by must be"):
        offline.point_in_time(str(root), "feat", frame, by="later")
    with pytest.raises(quiver.InvalidRequest, match="already has column"):
        offline.point_in_time(str(root), "feat", frame.assign(a=1.0))
    # A column whose name the history reserves: its changes are left out, said and counted.
    server = start_server("--history", str(root), *FAST, data_dir=server.data_dir)
    create(server.url, "odd", {"key": "id", "columns": {"id": {"dtype": "int64"},
                                                         "_quiver_op": {"dtype": "int64"}}})
    write(server, "odd", {"id": [1], "_quiver_op": [2]})
    write(server, "feat", {"id": [2], "a": [1.5]})
    deadline = time.monotonic() + 20
    while server.metrics()["quiver_history_skipped_total"] < 2:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    assert "reserves for its own columns" in server.log()


def test_history_survives_kill_without_loss_or_repeats(start_server, spawn_server, tmp_path):
    history = f"file://{tmp_path}/history"
    args = ("--history", history, "--history-interval", "0.05", "--wal-segment-bytes", "16384")
    data_dir = tmp_path / "data"
    written = 0
    for attempt in range(3):
        server = spawn_server(*args, data_dir=data_dir)
        if attempt == 0:
            create(server.url, "feat", FEAT)
        deadline = time.monotonic() + random.uniform(0.3, 1.0)
        while time.monotonic() < deadline:  # the history is written meanwhile
            write(server, "feat", {"id": list(range(written, written + 20)),
                                   "c": list(range(written, written + 20))})
            written += 20
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
    server = start_server(*args, data_dir=data_dir)
    assert server.stop() == 0
    rows = offline.read_history(history, "feat", columns=["id", "c", "_quiver_lsn", "_quiver_row"])
    pairs = list(zip(rows.column("_quiver_lsn").to_pylist(), rows.column("_quiver_row").to_pylist()))
    assert len(pairs) == len(set(pairs)) == written  # every acknowledged row, once
    assert sorted(rows.column("c").to_pylist()) == list(range(written))


def test_the_store_away_delays_the_history_only(start_server, tmp_path):
    with S3Server(tmp_path / "moto.log") as s3:
        history = s3.uri("quiver-history/h", through_proxy=True)
        server = start_server("--history", history, *FAST)
        create(server.url, "feat", FEAT)
        write(server, "feat", {"id": [1], "c": [1]})
        s3.proxy.down()
        try:
            for i in range(2, 6):
                write(server, "feat", {"id": [i], "c": [i]})  # writes go on meanwhile
            deadline = time.monotonic() + 20
            while server.metrics()["quiver_history_failures_total"] == 0:
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.1)
            m = server.metrics()
            assert m["quiver_history_lsn"] < m["quiver_wal_last_lsn"]
            assert m["quiver_history_lag_seconds"] > 0
            assert "change history write failed; retrying" in server.log()
        finally:
            s3.proxy.up()
        deadline = time.monotonic() + 90
        while True:
            m = server.metrics()
            if m["quiver_history_lsn"] >= m["quiver_wal_last_lsn"]:
                break
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        direct = s3.uri("quiver-history/h")
        rows = offline.read_history(direct, "feat", columns=["id", "c"])
        assert sorted(rows.column("c").to_pylist()) == [1, 2, 3, 4, 5]
        frame = pd.DataFrame({"id": [1, 5], "event_timestamp": [pd.Timestamp.now(tz="UTC")] * 2})
        assert offline.point_in_time(direct, "feat", frame)["c"].tolist() == [1, 5]


def test_history_configuration_is_checked(tmp_path):
    from test_object_store import run_quiverd
    code, err = run_quiverd(tmp_path / "d1", "--history", "file:///x", "--follow", "file:///y")
    assert code == 2 and "--history and --follow" in err, err
    code, err = run_quiverd(tmp_path / "d2", "--history", "nosuch://bucket/x")
    assert code == 1 and "nosuch" in err, err


def test_the_embedded_engine_keeps_a_history(tmp_path):
    history = str(tmp_path / "history")
    with pytest.raises(quiver.InvalidRequest, match="history needs a data directory"):
        quiver.open(history=history)
    db = quiver.open(tmp_path / "data", history=history, history_interval=0.1)
    db.create_table("feat", pa.schema([pa.field("id", pa.int64(), nullable=False),
                                       pa.field("c", pa.int64())]), key="id")
    db.write("feat", pa.table({"id": [1, 2], "c": [10, 20]}))
    first = pd.Timestamp.now(tz="UTC")
    time.sleep(0.005)
    db.write("feat", pa.table({"id": [1], "c": [11]}))
    db.close()  # writes the rest
    frame = pd.DataFrame({"id": [1, 1, 2], "event_timestamp": [first, pd.Timestamp.now(tz="UTC"),
                                                               first]})
    assert offline.point_in_time(history, "feat", frame)["c"].tolist() == [10, 11, 20]


def test_composite_keys_in_the_history_and_point_in_time(tmp_path):
    history = str(tmp_path / "history")
    db = quiver.open(tmp_path / "data", history=history, history_interval=0.1)
    db.create_table("pairs", {"key": ["user", "item"],
                              "columns": {"user": {"dtype": "int64"}, "item": {"dtype": "utf8"},
                                          "c": {"dtype": "int64"}}})
    db.write("pairs", pa.table({"user": [1, 1, 2], "item": ["a", "b", "a"], "c": [10, 20, 30]}))
    first = pd.Timestamp.now(tz="UTC")
    time.sleep(0.005)
    db.write("pairs", pa.table({"user": [1], "item": ["a"], "c": [11]}))
    db.delete("pairs", {"user": [2], "item": ["a"]})
    db.close()
    rows = offline.read_history(history, "pairs")
    deleted = [r for r in rows.to_pylist() if r["_quiver_op"] == "delete"]
    assert [(r["user"], r["item"]) for r in deleted] == [(2, "a")], \
        "a delete's keys are the key columns"
    frame = pd.DataFrame({"user": [1, 1, 1, 2, 2], "item": ["a", "a", "b", "a", "a"],
                          "event_timestamp": [first, pd.Timestamp.now(tz="UTC"), first, first,
                                              pd.Timestamp.now(tz="UTC")]})
    answer = offline.point_in_time(history, "pairs", frame, by="applied")
    assert answer["c"].tolist()[:3] == [10, 11, 20]
    assert answer["c"].tolist()[3] == 30 and pd.isna(answer["c"].tolist()[4])
    with pytest.raises(quiver.InvalidRequest, match="key= names 1 column"):
        offline.point_in_time(history, "pairs", frame, key="user")
