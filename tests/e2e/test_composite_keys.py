"""Composite keys (docs/schema.md, "Composite keys") through every front end of the real quiverd:
HTTP (JSON and Arrow IPC), Flight, RESP, and the Python client over HTTP, Flight and embedded;
restarts, schema changes, and the errors a bad key gets."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
import redis
import requests

import quiver

SCHEMA = {"key": ["user_id", "item_id"],
          "columns": {"user_id": {"dtype": "int64"}, "item_id": {"dtype": "utf8"},
                      "score": {"dtype": "float32"}, "seen": {"dtype": "int32"}}}
ROWS = {"user_id": [1, 1, 2, 3], "item_id": ["a", "b", "a", "x:y"],
        "score": [0.5, 1.5, 2.5, 3.5], "seen": [10, 11, 12, 13]}
IPC = "application/vnd.apache.arrow.stream"
QUIVER = pathlib.Path(sys.executable).parent / "quiver"


def table_url(server, suffix=""):
    return f"{server.url}/api/v1/table/t{suffix}"


@pytest.fixture
def server(start_server):
    server = start_server()
    created = requests.put(table_url(server), json=SCHEMA)
    assert created.status_code == 201, created.text
    written = requests.put(table_url(server, "/write"), json={"columns": ROWS})
    assert written.status_code == 200, written.text
    return server


def ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_http_json_and_ipc_fetches_take_one_array_per_key_column(server):
    got = requests.post(table_url(server, "/fetch"), json={
        "keys": {"item_id": ["b", "a", "a", "zz"], "user_id": [1, 2, 1, 1]},
        "columns": ["score", "user_id"]})
    assert got.status_code == 200, got.text
    assert got.json()["columns"] == {"score": [1.5, 2.5, 0.5, None], "user_id": [1, 2, 1, None]}
    keys = pa.table({"user_id": pa.array([3, 9], pa.int32()), "item_id": ["x:y", "a"]})
    answer = requests.post(table_url(server, "/fetch?columns=seen&found=true"), data=ipc(keys),
                           headers={"Content-Type": IPC, "Accept": IPC})
    assert answer.status_code == 200, answer.text
    result = pa.ipc.open_stream(answer.content).read_all()
    assert result.to_pydict() == {"seen": [13, None], "_found": [True, False]}
    described = requests.get(table_url(server)).json()
    assert described["key"] == ["user_id", "item_id"] and described["rows"] == 4
    assert described["schema"]["key"] == ["user_id", "item_id"]
    deleted = requests.post(table_url(server, "/delete"),
                            json={"keys": {"user_id": [1, 1], "item_id": ["a", "nope"]}})
    assert deleted.json()["deleted"] == 1
    assert requests.get(table_url(server)).json()["rows"] == 3


@pytest.mark.parametrize("body, error", [
    ({"keys": [1, 2]}, "\"keys\" must be an object of one array per key column (the key is "
                       "user_id, item_id)"),
    ({"keys": {"user_id": [1]}}, "lack key column 'item_id'"),
    ({"keys": {"user_id": [1], "item_id": ["a"], "score": [1]}}, "'score', which is not a key"),
    ({"keys": {"user_id": [1, 2], "item_id": ["a"]}}, "has 2 values"),
    ({"keys": {"user_id": ["one"], "item_id": ["a"]}}, "user_id"),
    ({"keys": {"user_id": [None], "item_id": ["a"]}}, "key at position 0 is null"),
    ({"keys": {}}, "names no key column"),
])
def test_bad_keys_are_refused_naming_what_was_wrong(server, body, error):
    got = requests.post(table_url(server, "/fetch"), json=body)
    assert got.status_code == 400, got.text
    assert error in got.json()["error"], got.text
    # An Arrow body of the key column alone is refused too; the server goes on serving.
    one = requests.post(table_url(server, "/fetch"), data=ipc(pa.table({"user_id": [1]})),
                        headers={"Content-Type": IPC})
    assert one.status_code == 400 and "lack key column 'item_id'" in one.text
    write = requests.put(table_url(server, "/write"),
                         json={"columns": {"user_id": [5], "score": [1.0]}})
    assert write.status_code == 400 and "no key column 'item_id'" in write.text
    assert requests.get(table_url(server)).json()["rows"] == 4


def test_flight_reads_scans_and_deletes(server):
    client = flight.connect(server.flight_url)
    ticket = {"table": "t", "keys": {"user_id": [2, 1], "item_id": ["a", "b"]},
              "columns": ["score"]}
    got = client.do_get(flight.Ticket(json.dumps(ticket).encode())).read_all()
    assert got.to_pydict() == {"score": [2.5, 1.5]}
    # A scan with columns: the key columns first, then those asked for.
    scan = client.do_get(flight.Ticket(json.dumps({"table": "t", "columns": ["seen"]}).encode()))
    table = scan.read_all().sort_by("seen")
    assert table.column_names == ["user_id", "item_id", "seen"]
    assert table.column("item_id").to_pylist() == ["a", "b", "a", "x:y"]
    db = quiver.connect(server.flight_url)
    keys = pa.table({"user_id": [3, 1], "item_id": ["x:y", "zz"]})
    result = db.read("t", keys, ["seen"])
    assert result.to_arrow().column("seen").to_pylist() == [13, None]
    assert list(result.found) == [True, False]
    assert db.delete("t", {"user_id": [3], "item_id": ["x:y"]}) == 1
    with pytest.raises(quiver.QuiverError, match="lack key column 'item_id'"):
        db.read("t", {"user_id": [1]})
    db.close()
    client.close()


def test_resp_reads_rows_by_the_key_parts_joined_by_the_separator(server):
    r = redis.Redis(port=server.resp_port)
    assert r.hgetall("t:1:b") == {b"score": b"1.5", b"seen": b"11"}
    assert r.hgetall("t:3:x:y") == {b"score": b"3.5", b"seen": b"13"}, \
        "only the last part may hold the separator"
    assert r.hgetall("t:1") == {} and r.hgetall("t:one:a") == {}
    answer = pa.ipc.open_stream(r.execute_command(
        "QUIVER.FETCH", "t", 3, "2:a", "9:a", "3:x:y", "FOUND", "COLUMNS", "seen")).read_all()
    assert answer.to_pydict() == {"seen": [12, None, 13], "_found": [True, False, True]}
    with pytest.raises(redis.ResponseError, match="key column 'user_id' is int64: 'one'"):
        r.execute_command("QUIVER.FETCH", "t", 1, "one:a")
    with pytest.raises(redis.ResponseError, match=r"the key has 2 columns \(user_id, item_id\)"):
        r.execute_command("QUIVER.FETCH", "t", 1, "7")
    assert r.ping()
    r.close()


def test_python_client_over_every_backend(server, tmp_path):
    frame = pd.DataFrame({"item_id": ["a", "b", "q"], "user_id": [2, 1, 1]})
    for db in (quiver.connect(server.url), quiver.connect(server.flight_url),
               quiver.open(tmp_path / "embedded")):
        if db.backend == "embedded":  # from a pyarrow schema and key=[...]
            db.create_table("t", pa.schema([("score", pa.float32()), ("item_id", pa.string()),
                                            ("user_id", pa.int64()), ("seen", pa.int32())]),
                            key=["user_id", "item_id"])
            db.write("t", pa.table(ROWS))
        assert db.table_schema("t")["key"] == ["user_id", "item_id"]
        schema = db.schema("t")
        assert schema.field("user_id").metadata[b"quiver.key"] == b"1"
        assert schema.field("item_id").metadata[b"quiver.key"] == b"2"
        for keys in (frame, frame.to_dict("list"), pa.Table.from_pandas(frame),
                     pa.RecordBatch.from_pandas(frame)):
            got = db.read("t", keys, ["score"]).to_arrow()
            assert got.column("score").to_pylist() == [2.5, 1.5, None], (db.backend, type(keys))
        db.write("t", pa.table({"user_id": [1], "item_id": ["q"], "score": [9.0]}))
        assert db.read("t", {"user_id": [1], "item_id": ["q"]}).to_arrow().column(
            "score").to_pylist() == [9.0]
        assert db.delete("t", {"user_id": [1, 1], "item_id": ["q", "q"]}) == 1
        with pytest.raises(quiver.QuiverError, match="one array per key column"):
            db.read("t", [1, 2])
        db.close()


def test_rows_survive_restarts_and_schema_changes(start_server, tmp_path):
    server = start_server()
    db = quiver.connect(server.url)
    db.create_table("t", SCHEMA)
    db.write("t", pa.table(ROWS))
    db.alter_table("t", rename={"user_id": "uid"}, add={"extra": {"dtype": "float64"}})
    assert db.table_schema("t")["key"] == ["uid", "item_id"]
    with pytest.raises(quiver.QuiverError, match="a key column cannot be dropped"):
        db.alter_table("t", drop=["item_id"])
    db.close()
    assert server.stop() == 0
    again = start_server(data_dir=server.data_dir)
    db = quiver.connect(again.url)
    got = db.read("t", {"uid": [3, 1], "item_id": ["x:y", "a"]}, ["score"]).to_arrow()
    assert got.column("score").to_pylist() == [3.5, 0.5]
    assert db.describe("t")["rows"] == 4
    db.close()


def test_shared_memory_readers_read_composite_keys(server):
    shm = quiver.connect(f"shm://{server.data_dir}")
    http = quiver.connect(server.url)
    keys = {"user_id": [3, 1, 2, 1], "item_id": ["x:y", "b", "b", "a"]}
    for given in (keys, pd.DataFrame(keys), pa.table(keys).to_batches()[0]):
        got = shm.read("t", given).to_arrow()
        assert got.equals(http.read("t", keys).to_arrow())
    assert shm.read("t", keys, ["score"]).to_arrow().column("score").to_pylist() == \
        [3.5, 1.5, None, 0.5]
    # The hot path: tuples in key order, or an Arrow batch of the key columns.
    rows = shm.table("t", ["seen"])
    assert rows.get((1, "b")).tolist() == [11]
    assert rows.get((2, "b")) is None
    out = np.empty((4, 1), dtype=rows.dtype)
    found = rows.read_into([(3, "x:y"), (1, "b"), (2, "b"), (1, "a")], out)
    assert found.tolist() == [True, True, False, True]
    assert out[[0, 1, 3], 0].tolist() == [13, 11, 10]
    found = rows.read_into(pa.record_batch({"item_id": ["a", "a"], "user_id": [2, 9]}),
                           np.empty((2, 1), dtype=rows.dtype))
    assert found.tolist() == [True, False]
    with pytest.raises(TypeError, match="must be a tuple of 2 parts"):
        rows.get(1)
    with pytest.raises(quiver.QuiverError, match="one array per key column"):
        shm.read("t", [1, 2])
    with pytest.raises(quiver.QuiverError, match="lack key column 'item_id'"):
        rows.read_into(pa.record_batch({"user_id": [1]}), np.empty((1, 1), dtype=rows.dtype))
    shm.close()
    http.close()


def test_cli_creates_from_a_file_and_gets_by_joined_parts(start_server, tmp_path):
    server = start_server()
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table(ROWS), path)

    def run(*args):
        result = subprocess.run([str(QUIVER), "--url", server.url, *args], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    run("create", "c", "--from", str(path), "--key", "user_id,item_id")
    run("load", "c", str(path))
    schema = json.loads(run("schema", "c"))
    assert schema["key"] == ["user_id", "item_id"]
    lines = [json.loads(line) for line in run("get", "c", "1:b", "3:x:y", "--format", "json")
             .splitlines()]
    assert [line["score"] for line in lines] == [1.5, 3.5]
    assert lines[0]["key"] == {"user_id": 1, "item_id": "b"}
