"""Casts on write against the real quiverd: one set of rules (docs/schema.md, "Casts on write")
for HTTP JSON, Arrow IPC and Parquet bodies, Flight DoPut and the Python client (HTTP, Flight and
embedded), under the table's rule and a write's own."""

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
import requests

import quiver

SCHEMA = {"key": "id", "columns": {"id": {"dtype": "int64"}, "f": {"dtype": "float32"},
                                   "i": {"dtype": "int32"}, "d": {"dtype": "date32"},
                                   "t": {"dtype": "timestamp[ms]"}}}

# (column, Arrow values of another type, converts under safe?, text of the error)
CASES = [
    ("f", pa.array([1.5, 0.1]), True, None),
    ("f", pa.array([1.5, 1e300]), False, "column 'f' row 1: 1e+300 is out of range for float32"),
    ("i", pa.array([1, 2 ** 31 - 1], pa.int64()), True, None),
    ("i", pa.array([1, 2 ** 31], pa.int64()), False, "column 'i' row 1: cannot store 2147483648"),
    ("i", pa.array([2.0, 2.5]), False, "column 'i' row 1: cannot store 2.5 as int32"),
    ("d", pa.array(["2024-05-01", "2024-05-02"]), True, None),
    ("d", pa.array(["2024-05-01", "soon"]), False, "column 'd' row 1"),
    ("t", pa.array([1_000_000, 2_000_000], pa.timestamp("ns")), True, None),
    ("t", pa.array([1_000_000, 2_000_001], pa.timestamp("ns")), False, "column 't' row 1"),
]


def ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def body(column, values):
    return pa.table({"id": pa.array(range(len(values)), pa.int64()), column: values})


@pytest.fixture
def server(start_server):
    server = start_server()
    assert requests.put(f"{server.url}/api/v1/table/t", json=SCHEMA).status_code == 201
    return server


def http_write(server, data: bytes, content_type: str, cast=None):
    query = "" if cast is None else f"?cast={cast}"
    return requests.put(f"{server.url}/api/v1/table/t/write{query}", data=data,
                        headers={"Content-Type": content_type})


@pytest.mark.parametrize("column,values,converts,error", CASES)
def test_the_same_rules_for_every_front_end(server, tmp_path, column, values, converts, error):
    table = body(column, values)
    answers = {
        "ipc": http_write(server, ipc(table), "application/vnd.apache.arrow.stream"),
        "parquet": http_write(server, parquet(table), "application/vnd.apache.parquet"),
    }
    for name, response in answers.items():
        assert (response.status_code == 200) == converts, (name, response.text)
        if not converts:
            assert response.json()["code"] == "INVALID_ARGUMENT"
            assert error in response.json()["error"], (name, response.text)
    # Flight's DoPut, straight (no client-side conversion).
    client = flight.connect(server.flight_url)
    try:
        writer, _ = client.do_put(flight.FlightDescriptor.for_path("t"), table.schema)
        with writer:
            writer.write_table(table)
        assert converts
    except pa.ArrowInvalid as e:
        assert not converts and error in str(e)
    # The Python client converts with the engine's rules before it sends, over every transport.
    for db in (quiver.connect(server.url), quiver.connect(server.flight_url),
               quiver.open(tmp_path / f"embedded-{column}")):
        if db.backend == "embedded":
            db.create_table("t", SCHEMA)
        if converts:
            assert db.write("t", table).rows_written == 2
        else:
            with pytest.raises(quiver.SchemaError, match=error.replace("+", r"\+")):
                db.write("t", table)
        db.close()


def test_json_numbers_and_iso_strings(server):
    def write(columns, cast=None):
        query = "" if cast is None else f"?cast={cast}"
        return requests.put(f"{server.url}/api/v1/table/t/write{query}", json={"columns": columns})

    assert write({"id": [1], "f": [0.1], "i": [7], "d": ["2024-05-01"],
                  "t": ["2024-05-01T10:00:00.5"]}).status_code == 200
    assert write({"id": [2], "d": [19844], "t": [1714557600000]}).status_code == 200
    got = requests.post(f"{server.url}/api/v1/table/t/fetch", json={"keys": [1, 2]}).json()
    assert got["columns"]["d"] == [19844, 19844]
    assert got["columns"]["t"] == [1714557600500, 1714557600000]
    response = write({"id": [1, 2], "f": [1.0, 1e300]})
    assert response.status_code == 400
    assert "column 'f' row 1: 1e+300 is out of range for float32" in response.json()["error"]
    response = write({"id": [1, 2], "i": [1, 2.5]})
    assert "column 'i' row 1: cannot store 2.5 as int32" in response.json()["error"]
    response = write({"id": [1], "i": ["7"]})
    assert "column 'i' row 0: \"7\" is not a number" in response.json()["error"]
    # Strict: numbers are numbers, but an ISO string is a conversion.
    assert write({"id": [3], "f": [0.5], "d": [19844]}, "strict").status_code == 200
    response = write({"id": [3], "d": ["2024-05-01"]}, "strict")
    assert response.status_code == 400
    assert "utf8 given for a column of date32 (cast=strict" in response.json()["error"]
    response = write({"id": [3]}, "lossy")
    assert response.status_code == 400 and "cast 'lossy' is not one of safe, strict" in \
        response.json()["error"]
    # Nothing of a refused write was written.
    got = requests.post(f"{server.url}/api/v1/table/t/fetch", json={"keys": [1]}).json()
    assert got["columns"]["f"] == [pytest.approx(0.1)] and got["columns"]["i"] == [7]


def test_a_strict_table_and_writes_that_override_it(start_server, tmp_path):
    server = start_server()
    strict = {**SCHEMA, "cast": "strict"}
    created = requests.put(f"{server.url}/api/v1/table/s", json=strict)
    assert created.status_code == 201 and created.json()["cast"] == "strict"
    table = pa.table({"id": pa.array([1], pa.int64()), "f": pa.array([1.5])})  # float64
    response = requests.put(f"{server.url}/api/v1/table/s/write", data=ipc(table),
                            headers={"Content-Type": "application/vnd.apache.arrow.stream"})
    assert response.status_code == 400
    assert "float64 given for a column of float32" in response.json()["error"]
    response = requests.put(f"{server.url}/api/v1/table/s/write?cast=safe", data=ipc(table),
                            headers={"Content-Type": "application/vnd.apache.arrow.stream"})
    assert response.status_code == 200
    client = flight.connect(server.flight_url)
    command = flight.FlightDescriptor.for_command(json.dumps({"table": "s", "cast": "safe"}))
    writer, _ = client.do_put(command, table.schema)
    with writer:
        writer.write_table(table)
    with pytest.raises(pa.ArrowInvalid, match="belong to writes"):
        client.get_flight_info(command)
    db = quiver.connect(server.url)
    assert db.schema("s").metadata[b"quiver.cast"] == b"strict"
    with pytest.raises(quiver.SchemaError, match="float64 given for a column of float32"):
        db.write("s", {"id": [2], "f": np.array([2.5])})
    assert db.write("s", {"id": [2], "f": np.array([2.5])}, cast="safe").rows_written == 1
    assert db.write("s", {"id": [3], "f": np.array([3.5], np.float32)}).rows_written == 1
    # The rule changes online.
    changed = requests.patch(f"{server.url}/api/v1/table/s", json={"cast": "safe"})
    assert changed.status_code == 200 and "cast" not in changed.json()
    assert db.write("s", {"id": [4], "f": np.array([4.5])}).rows_written == 1
