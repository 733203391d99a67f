"""A row's remaining time to live, readable with the row (docs/http.md "with_ttl"): the HTTP
fetch (JSON and Arrow), the Flight ticket and DoExchange, and the Python client over HTTP, Flight
and embedded; RESP's TTL and PTTL are in test_resp_tables.py."""

import json

import pyarrow as pa
import pyarrow.flight as flight
import pytest
import requests

import quiver

SCHEMA = {"key": "id", "columns": {"id": {"dtype": "int64"}, "x": {"dtype": "float32"}}}


def write_rows(db):
    db.write("t", pa.table({"id": [1], "x": [1.0]}), ttl=100)
    db.write("t", pa.table({"id": [2], "x": [2.0]}))  # never expires


def check_ttl(values):
    """[row 1: about 100 s, row 2: never, key 3: missing]."""
    assert 98_000 < values[0] <= 100_000, values
    assert values[1:] == [None, None], values


def test_http_fetch_with_ttl(start_server):
    server = start_server()
    db = quiver.connect(server.url)
    db.create_table("t", SCHEMA)
    write_rows(db)
    url = f"{server.url}/api/v1/table/t/fetch"
    answer = requests.post(url + "?with_ttl=true", json={"keys": [1, 2, 3], "columns": ["x"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    check_ttl(body["ttl_ms"])
    assert body["columns"] == {"x": [1.0, 2.0, None]}
    plain = requests.post(url, json={"keys": [1]}).json()
    assert "ttl_ms" not in plain
    arrow = requests.post(url + "?with_ttl=1&found=true", json={"keys": [1, 2, 3]},
                          headers={"Accept": "application/vnd.apache.arrow.stream"})
    table = pa.ipc.open_stream(arrow.content).read_all()
    assert table.column_names == ["x", "_ttl_ms", "_found"]
    check_ttl(table.column("_ttl_ms").to_pylist())
    db.close()


def test_flight_and_the_python_client_read_the_ttl(start_server, tmp_path):
    server = start_server()
    client = flight.connect(server.flight_url)
    quiver.connect(server.url).create_table("t", SCHEMA)
    write_rows(quiver.connect(server.url))
    ticket = {"table": "t", "keys": [1, 2, 3], "with_ttl": True}
    got = client.do_get(flight.Ticket(json.dumps(ticket).encode())).read_all()
    assert got.column_names == ["x", "_ttl_ms"]
    check_ttl(got.column("_ttl_ms").to_pylist())
    with pytest.raises(pa.ArrowInvalid, match="with_ttl"):
        client.do_get(flight.Ticket(json.dumps({"table": "t", "with_ttl": True}).encode())
                      ).read_all()
    with pytest.raises(pa.ArrowInvalid, match="\"with_ttl\" must be true or false"):
        client.do_get(flight.Ticket(json.dumps({"table": "t", "keys": [1],
                                                "with_ttl": 1}).encode())).read_all()
    client.close()
    embedded = quiver.open(tmp_path / "embedded")
    embedded.create_table("t", SCHEMA)
    write_rows(embedded)
    for db in (quiver.connect(server.url), quiver.connect(server.flight_url), embedded):
        result = db.read("t", [1, 2, 3], ["x"], with_ttl=True)
        data = result.to_arrow()
        assert data.column_names == ["x", "_ttl_ms"], db.backend
        check_ttl(data.column("_ttl_ms").to_pylist())
        assert list(result.found) == [True, True, False]
        assert db.read("t", [1]).to_arrow().column_names == ["x"]
        db.close()
    shm = quiver.connect(f"shm://{server.data_dir}")
    with pytest.raises(quiver.InvalidRequest, match="not over shared memory"):
        shm.read("t", [1], with_ttl=True)
    shm.close()
