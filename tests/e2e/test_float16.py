"""float16, scalar and as the element of lists and embeddings (fixed_size_list[float16, 768], the
common half-precision embedding), through every front end: HTTP JSON, Arrow IPC and Parquet,
Arrow Flight, RESP (hash fields and QUIVER.FETCH), and the Python package's to_numpy(): the
dtype registry's proof (issue 22)."""

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import redis
import requests

import quiver

ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
DIM = 768
SCHEMA = {"key": "id", "columns": {"id": {"dtype": "utf8"}, "h": {"dtype": "float16"},
                                   "emb": {"dtype": f"fixed_size_list[float16, {DIM}]"},
                                   "l": {"dtype": "list[float16]"}}}


def embeddings(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float16)


def arrow_table(ids: list[str], seed: int = 0) -> pa.Table:
    matrix = embeddings(len(ids), seed)
    return pa.table({
        "id": ids,
        "h": pa.array(matrix[:, 0]),
        "emb": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), DIM),
        "l": pa.array([list(row[:3]) for row in matrix], pa.list_(pa.float16())),
    })


def fetch_arrow(server, keys: list[str]) -> pa.Table:
    response = requests.post(f"{server.url}/api/v1/table/t/fetch", json={"keys": keys},
                             headers={"Accept": ARROW})
    assert response.status_code == 200, response.text
    return ipc.open_stream(response.content).read_all()


def test_float16_through_http_json_ipc_and_parquet(server):
    url = f"{server.url}/api/v1/table/t"
    assert requests.put(url, json=SCHEMA).status_code == 201
    assert requests.get(url + "/schema").json()["columns"]["emb"]["dtype"] == \
        f"fixed_size_list[float16, {DIM}]"
    # JSON in and out: values as the shortest decimals that read back as the same float16.
    written = requests.put(url + "/write", json={"columns": {
        "id": ["j", "big", "none"], "h": [0.1, 65504, None],
        "emb": [[0.5] * DIM, None, None], "l": [[0.1, -2], [], None]}})
    assert written.status_code == 200, written.text
    body = requests.post(url + "/fetch", json={"keys": ["j", "big", "none", "missing"]}).json()
    assert body["columns"]["h"] == [0.1, 65504, None, None]
    assert body["columns"]["l"] == [[0.1, -2], [], None, None]
    assert body["columns"]["emb"][0] == [0.5] * DIM
    # Past float16's range is refused (it would be infinity), naming the column and row.
    refused = requests.put(url + "/write", json={"columns": {"id": ["ok", "inf"], "h": [1, 1e6]}})
    assert refused.status_code == 400
    assert "column 'h' row 1: 1000000 is out of range for float16" in refused.json()["error"]
    assert requests.post(url + "/fetch", json={"keys": ["ok"]}).json()["found"] == [False]
    # Arrow IPC in and out: the bits come back as written.
    table = arrow_table(["a", "b"])
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    assert requests.put(url + "/write", data=sink.getvalue(),
                        headers={"Content-Type": ARROW}).status_code == 200
    back = fetch_arrow(server, ["a", "b"])
    assert back.schema.field("emb").type == pa.list_(pa.float16(), DIM)
    assert back.column("emb").equals(table.column("emb"))
    assert back.column("h").equals(table.column("h"))
    assert back.column("l").equals(table.column("l"))
    # Parquet (its FLOAT16 logical type) in.
    parquet = arrow_table(["p"], seed=1)
    sink = io.BytesIO()
    pq.write_table(parquet, sink)
    assert requests.put(url + "/write", data=sink.getvalue(),
                        headers={"Content-Type": PARQUET}).status_code == 200
    assert fetch_arrow(server, ["p"]).column("emb").equals(parquet.column("emb"))
    # float32 values are cast on write; a float16 embedding of the wrong length is refused.
    cast = requests.put(url + "/write", json={"columns": {"id": ["c"], "h": [1.5]}})
    assert cast.status_code == 200
    wrong = requests.put(url + "/write", json={"columns": {"id": ["w"], "emb": [[1.0, 2.0]]}})
    assert wrong.status_code == 400 and "incorrect list size 2" in wrong.text


def test_float16_through_flight_and_resp(server):
    with flight.connect(server.flight_url) as client:
        list(client.do_action(flight.Action("create_table", json.dumps(
            {"table": "t", "schema": SCHEMA}).encode())))
        table = arrow_table(["a", "b", "c"], seed=2)
        writer, _ = client.do_put(flight.FlightDescriptor.for_path("t"), table.schema)
        writer.write_table(table)
        writer.close()
        got = client.do_get(flight.Ticket(json.dumps(
            {"table": "t", "keys": ["c", "a", "zz"], "columns": ["emb", "h"]}).encode())).read_all()
    assert got.column("emb").type == pa.list_(pa.float16(), DIM)
    assert got.column("emb").to_pylist()[:2] == [table.column("emb")[2].as_py(),
                                                  table.column("emb")[0].as_py()]
    assert got.column("emb")[2].as_py() is None
    # RESP: a hash field is the value's shortest decimal; an embedding is packed little-endian
    # (2 bytes an element), what Redis users store vectors as.
    kv = redis.Redis(port=server.resp_port)
    fields = kv.hgetall("t:a")
    matrix = embeddings(3, seed=2)
    assert np.frombuffer(fields[b"emb"], dtype="<f2").tolist() == matrix[0].tolist()
    assert np.float16(float(fields[b"h"])) == matrix[0, 0]
    fetched = kv.execute_command("QUIVER.FETCH", "t", 2, "b", "a", "COLUMNS", "emb")
    result = ipc.open_stream(fetched).read_all()
    assert result.column("emb").type == pa.list_(pa.float16(), DIM)


def test_float16_to_numpy_is_a_float16_matrix_view(tmp_path):
    db = quiver.open(str(tmp_path / "data"))
    try:
        db.create_table("t", SCHEMA)
        matrix = embeddings(100, seed=3)
        db.write("t", {"id": [f"k{i}" for i in range(100)], "h": matrix[:, 0],
                       "emb": matrix})
        result = db.read("t", ["k5", "missing", "k7"], columns=["emb"])
        emb = result.to_numpy()
        assert emb.dtype == np.float16 and emb.shape == (3, DIM)
        assert (emb[0] == matrix[5]).all() and (emb[2] == matrix[7]).all()
        assert np.isnan(emb[1]).all(), "a missing key reads as NaN"
        values = result.to_arrow().column(0).chunk(0).values.buffers()[1]
        assert emb.__array_interface__["data"][0] == values.address, "a view, not a copy"
        scalars = db.read("t", ["k1", "missing"], columns=["h"]).to_numpy()
        assert scalars.dtype == np.float16 and scalars[0, 0] == matrix[1, 0]
        assert np.isnan(scalars[1, 0])
    finally:
        db.close()
    # And after a restart, from the log.
    db = quiver.open(str(tmp_path / "data"))
    try:
        assert (db.read("t", ["k9"], columns=["emb"]).to_numpy()[0] == matrix[9]).all()
    finally:
        db.close()
