"""Sparse columns (docs/schema.md, "Sparse columns") against the real quiverd: created, written
and read over HTTP, Flight, RESP and the Python client, kept across restarts and snapshots, added
by a schema change; memory per row against a dense table."""

import pyarrow as pa
import pyarrow.flight as flight
import pytest
import redis
import requests

import quiver

SCHEMA = {"key": "id", "columns": {
    "id": {"dtype": "int64"}, "dense": {"dtype": "float32"},
    "clicks": {"dtype": "int64", "sparse": True}, "score": {"dtype": "float32", "sparse": True},
    "tag": {"dtype": "utf8", "sparse": True}, "flag": {"dtype": "bool", "sparse": True}}}


def url(server, suffix=""):
    return f"{server.url}/api/v1/table/t{suffix}"


def test_sparse_columns_through_every_front_end(start_server):
    server = start_server()
    assert requests.put(url(server), json=SCHEMA).status_code == 201
    described = requests.get(url(server)).json()
    assert {c["name"]: c.get("sparse", False) for c in described["columns"]} == {
        "id": False, "dense": False, "clicks": True, "score": True, "tag": True, "flag": True}
    written = requests.put(url(server, "/write"), json={"columns": {
        "id": [1, 2, 3], "clicks": [5, None, 7], "tag": [None, "b", "a longer tag value"]}})
    assert written.status_code == 200, written.text
    requests.put(url(server, "/write"), json={"columns": {"id": [1], "score": [0.5]}})
    got = requests.post(url(server, "/fetch"), json={"keys": [1, 2, 3, 4]}).json()["columns"]
    assert got["clicks"] == [5, None, 7, None]
    assert got["score"] == [0.5, None, None, None]
    assert got["tag"] == [None, "b", "a longer tag value", None]
    assert got["flag"] == [None] * 4
    # Flight, RESP (a null is no field; HSET sets a sparse column), the Python client.
    client = flight.connect(server.flight_url)
    ticket = flight.Ticket(b'{"table": "t", "keys": [1, 3], "columns": ["clicks", "tag"]}')
    assert client.do_get(ticket).read_all().to_pydict() == {"clicks": [5, 7],
                                                            "tag": [None, "a longer tag value"]}
    client.close()
    r = redis.Redis(port=server.resp_port)
    assert r.hgetall("t:2") == {b"tag": b"b"}
    assert r.hset("t:2", mapping={"flag": "true", "clicks": "9"}) == 2
    assert r.hgetall("t:2") == {b"tag": b"b", b"flag": b"true", b"clicks": b"9"}
    r.close()
    db = quiver.connect(server.url)
    assert db.schema("t").field("score").metadata[b"quiver.sparse"] == b"true"
    db.write("t", pa.table({"id": [3], "tag": pa.array([None], pa.string())}))  # clears it
    assert db.read("t", [3], ["tag", "clicks"]).to_arrow().to_pydict() == {"tag": [None],
                                                                         "clicks": [7]}
    db.alter_table("t", add={"late": {"dtype": "float64", "sparse": True}},
                   alter={"dense": {"sparse": True}})
    assert db.table_schema("t")["columns"]["dense"]["sparse"] is True
    db.write("t", pa.table({"id": [2], "late": [1.25]}))
    before = db.read("t", [1, 2, 3]).to_arrow()
    db.close()
    # A snapshot and a restart keep every value; the log after the snapshot too.
    assert requests.post(f"{server.url}/api/v1/admin/snapshot", json={}).status_code == 200
    requests.put(url(server, "/write"), json={"columns": {"id": [1], "late": [2.5]}})
    expected = before.to_pydict()
    expected["late"][0] = 2.5
    assert server.stop() == 0
    again = start_server(data_dir=server.data_dir)
    db = quiver.connect(again.url)
    assert db.read("t", [1, 2, 3]).to_arrow().to_pydict() == expected
    # Shared-memory readers read sparse columns as the server does; the hot path refuses them.
    shm = quiver.connect(f"shm://{again.data_dir}")
    assert shm.read("t", [1, 2, 3, 4]).to_arrow().equals(db.read("t", [1, 2, 3, 4]).to_arrow())
    with pytest.raises(quiver.QuiverError, match="a sparse"):
        shm.table("t", ["late"])
    shm.close()
    db.close()


@pytest.mark.parametrize("column, error", [
    ({"dtype": "fixed_size_list[float32, 4]", "sparse": True}, "a sparse column holds a scalar"),
    ({"dtype": "float32", "sparse": True, "nullable": False}, "must be nullable"),
    ({"dtype": "float32", "sparse": True, "default": 0}, "cannot have a default"),
])
def test_what_cannot_be_sparse_is_refused(start_server, column, error):
    server = start_server()
    schema = {"key": "id", "columns": {"id": {"dtype": "int64"}, "x": column}}
    answer = requests.put(url(server), json=schema)
    assert answer.status_code == 400 and error in answer.text
