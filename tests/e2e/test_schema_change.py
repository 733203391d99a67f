"""Online schema changes against the real quiverd: PATCH /api/v1/table/{name}, Flight's
alter_table action, RESP's QUIVER.ALTER, the Python client and the CLI; reads and writes during a
change; kill -9 in the middle of one."""

import json
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import redis
import requests

import quiver
from quiverd import Server

SCHEMA = {"key": "id", "columns": {"id": {"dtype": "int64"}, "a": {"dtype": "int32"},
                                   "x": {"dtype": "float32"}, "s": {"dtype": "utf8"}}}


def create(server, name="t", schema=SCHEMA, rows=0):
    assert requests.put(f"{server.url}/api/v1/table/{name}", json=schema).status_code == 201
    if rows:
        write(server, name, 0, rows)


def write(server, name, first, count, a_of=1):
    ids = list(range(first, first + count))
    body = {"columns": {"id": ids, "a": [i * a_of for i in ids], "s": [f"v{i}" for i in ids]}}
    response = requests.put(f"{server.url}/api/v1/table/{name}/write", json=body)
    assert response.status_code == 200, response.text


def fetch(server, name, keys, columns=None):
    body = {"keys": keys, **({"columns": columns} if columns else {})}
    response = requests.post(f"{server.url}/api/v1/table/{name}/fetch", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def patch(server, name, change):
    return requests.patch(f"{server.url}/api/v1/table/{name}", json=change)


def test_http_patch_applies_every_kind_of_change_at_once(start_server):
    server = start_server()
    create(server, rows=100)
    response = patch(server, "t", {"add": {"g": {"dtype": "float32"},
                                           "n": {"dtype": "int16", "nullable": False,
                                                 "default": 7}},
                                   "drop": ["x"], "rename": {"s": "label"},
                                   "alter": {"a": {"dtype": "int64"}}, "ttl": 3600})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "key": "id",
        "columns": {"id": {"dtype": "int64", "nullable": False},
                    "a": {"dtype": "int64", "nullable": True},
                    "label": {"dtype": "utf8", "nullable": True},
                    "g": {"dtype": "float32", "nullable": True},
                    "n": {"dtype": "int16", "nullable": False, "default": 7}},
        "ttl": 3600.0}
    assert requests.get(f"{server.url}/api/v1/table/t/schema").json() == response.json()
    got = fetch(server, "t", [3, 99, 100])
    assert got["columns"] == {"a": [3, 99, None], "label": ["v3", "v99", None],
                              "g": [None, None, None], "n": [7, 7, None]}
    # a = 2**40 fits the widened column; a new row gets the default of "n".
    body = {"columns": {"id": [500], "a": [2 ** 40]}}
    assert requests.put(f"{server.url}/api/v1/table/t/write", json=body).status_code == 200
    assert fetch(server, "t", [500], ["a", "n"])["columns"] == {"a": [2 ** 40], "n": [7]}
    info = requests.get(f"{server.url}/api/v1/table/t").json()
    assert info["rows"] == 101 and info["bytes"] > 0 and info["key"] == "id"
    assert info["ttl"] == 3600.0
    assert [c["name"] for c in info["columns"]] == ["id", "a", "label", "g", "n"]
    assert info["columns"][4] == {"name": "n", "dtype": "int16", "nullable": False, "default": 7}
    assert info["schema"] == response.json()
    assert info["memory"]["rows_with_ttl"] == 1  # the row written after the TTL was set
    # The TTL removed again; the change is in /metrics' view of the table too.
    assert patch(server, "t", {"ttl": None}).json().get("ttl") is None


@pytest.mark.parametrize("change,status,code,text", [
    ({"drop": ["id"]}, 400, "INVALID_ARGUMENT", "key column cannot be dropped"),
    ({"drop": ["nope"]}, 404, "NOT_FOUND", "no column 'nope'"),
    ({"alter": {"a": {"dtype": "int8"}}}, 400, "INVALID_ARGUMENT", "cannot change int32 to int8"),
    ({"alter": {"x": {"dtype": "float16"}}}, 400, "INVALID_ARGUMENT", "float32 to float16"),
    ({"rename": {"a": "x"}}, 400, "INVALID_ARGUMENT", "column 'x'"),
    ({"add": {"s": {"dtype": "int8"}}}, 400, "INVALID_ARGUMENT", "column 's': cannot be added"),
    ({"add": {"g": {"dtype": "int8", "nullable": False}}}, 400, "INVALID_ARGUMENT", "default"),
    ({"add": {"g": {"dtype": "int8", "default": 1000}}}, 400, "INVALID_ARGUMENT", "does not fit"),
    ({}, 400, "INVALID_ARGUMENT", "changes nothing"),
    ({"grow": 1}, 400, "INVALID_ARGUMENT", "unknown part 'grow'"),
])
def test_refused_changes_name_the_reason_and_change_nothing(start_server, change, status, code,
                                                             text):
    server = start_server()
    create(server, rows=10)
    response = patch(server, "t", change)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert text in response.json()["error"]
    assert requests.get(f"{server.url}/api/v1/table/t/schema").json()["columns"] == {
        name: {**spec, "nullable": name != "id"} for name, spec in SCHEMA["columns"].items()}
    assert fetch(server, "t", [4], ["a"])["columns"] == {"a": [4]}


def test_bad_bodies_and_unknown_tables(start_server):
    server = start_server()
    create(server)
    response = requests.patch(f"{server.url}/api/v1/table/t", data=b"{not json",
                              headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    response = patch(server, "nope", {"ttl": 5})
    assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"
    assert requests.get(f"{server.url}/api/v1/table/nope").status_code == 404


def test_flight_resp_python_and_cli_change_schemas_too(start_server, tmp_path):
    server = start_server()
    create(server, rows=5)
    client = flight.connect(server.flight_url)
    [result] = client.do_action(flight.Action(
        "alter_table", json.dumps({"table": "t", "change": {"add": {"f": {"dtype": "float64"}}}})
        .encode()))
    assert "f" in json.loads(result.body.to_pybytes())["columns"]
    [result] = client.do_action(flight.Action("describe_table", b'{"table": "t"}'))
    assert json.loads(result.body.to_pybytes())["rows"] == 5
    with pytest.raises(KeyError, match="no column .nope."):
        list(client.do_action(flight.Action(
            "alter_table", b'{"table": "t", "change": {"drop": ["nope"]}}')))

    r = redis.Redis(port=server.resp_port)
    schema = json.loads(r.execute_command("QUIVER.ALTER", "t", '{"rename": {"f": "f2"}}'))
    assert "f2" in schema["columns"]
    assert json.loads(r.execute_command("QUIVER.DESCRIBE", "t"))["columns"][-1]["name"] == "f2"
    with pytest.raises(redis.ResponseError, match="cannot change float64 to float32"):
        r.execute_command("QUIVER.ALTER", "t", '{"alter": {"f2": {"dtype": "float32"}}}')
    with pytest.raises(redis.ResponseError, match="not valid JSON"):
        r.execute_command("QUIVER.ALTER", "t", "{")

    db = quiver.connect(server.url)
    changed = db.alter_table("t", add={"e": pa.list_(pa.float32())}, drop="f2", ttl=60)
    assert changed.names == ["id", "a", "x", "s", "e"]
    assert db.describe("t")["ttl"] == 60.0
    with pytest.raises(quiver.ColumnNotFound):
        db.alter_table("t", drop=["f2"])
    with quiver.connect(server.flight_url) as fdb:
        assert fdb.alter_table("t", alter={"e": "list[float64]"}).field("e").type == \
            pa.list_(pa.float64())

    cli = [sys.executable, "-m", "quiver.cli", "--url", server.url]
    out = subprocess.run([*cli, "alter", "t", "--add", "h", "int8", "--not-null", "h",
                          "--default", "h", "3", "--rename", "x", "score", "--ttl", "none"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "h int8 not null" in out.stdout and "score float32" in out.stdout
    out = subprocess.run([*cli, "alter", "t", "--alter", "a", "int8"], capture_output=True,
                         text=True)
    assert out.returncode == 1 and "cannot change int32 to int8" in out.stderr
    out = subprocess.run([*cli, "tables"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[2].split()[:3] == ["t", "5", out.stdout.splitlines()[2].split()[2]]
    assert "score:float32" in out.stdout
    out = subprocess.run([*cli, "describe", "t"], capture_output=True, text=True)
    assert json.loads(out.stdout)["columns"][-1] == {"name": "h", "dtype": "int8",
                                                     "nullable": False, "default": 3}


def test_embedded_alter_table_survives_a_restart(tmp_path):
    with quiver.open(tmp_path / "d") as db:
        db.create_table("t", SCHEMA)
        db.write("t", {"id": [1, 2], "a": [10, 20], "x": [0.5, 1.5], "s": ["a", "b"]})
        db.alter_table("t", add={"g": {"dtype": "float32", "default": 2.5}},
                       alter={"a": {"dtype": "float64"}})
    with quiver.open(tmp_path / "d") as db:
        assert db.read("t", [1, 2], ["a", "g"]).to_arrow().to_pydict() == {"a": [10.0, 20.0], "g": [2.5, 2.5]}
        assert db.schema("t").field("g").metadata == {b"quiver.default": b"2.5"}


def test_reads_and_writes_go_on_during_a_change(start_server):
    server = start_server()
    rows = 300_000
    create(server)
    ids = np.arange(rows, dtype=np.int64)
    table = pa.table({"id": ids, "a": ids.astype(np.int32), "s": [f"v{i}" for i in range(rows)]})
    db = quiver.connect(server.url)
    db.write("t", table)
    stop = threading.Event()
    acknowledged = []
    errors = []
    schemas = set()

    def writer():
        first = 0
        while not stop.is_set() or first < 20_000:
            try:
                write(server, "t", first, 500, a_of=3)
                acknowledged.append(first)
            except AssertionError as e:
                errors.append(str(e))
                return
            first += 500

    def reader():
        while not stop.is_set():
            got = fetch(server, "t", [1, rows - 1])
            schemas.add(tuple(got["columns"]))
            if "g" in got["columns"]:
                assert got["columns"]["g"] == [None, None]

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    response = patch(server, "t", {"add": {"g": {"dtype": "float32"}}, "drop": ["x"],
                                   "alter": {"a": {"dtype": "int64"}}})
    stop.set()
    for thread in threads:
        thread.join()
    assert response.status_code == 200, response.text
    assert not errors, errors
    # Every read saw one schema or the other, never a mix.
    assert schemas <= {("a", "x", "s"), ("a", "s", "g")}, schemas
    touched = acknowledged[-1] + 500
    got = db.read("t", ids, ["a"]).to_arrow().column("a").to_pylist()
    assert got[:touched] == [3 * i for i in range(touched)]
    assert got[touched:] == list(range(touched, rows))


def test_kill_9_during_a_change_keeps_the_old_or_the_new_table_whole(tmp_path):
    rows = 400_000
    data_dir = tmp_path / "d"
    server = Server(tmp_path, data_dir=data_dir)
    create(server)
    ids = np.arange(rows, dtype=np.int64)
    db = quiver.connect(server.url)
    db.write("t", pa.table({"id": ids, "a": ids.astype(np.int32),
                           "s": [f"v{i}" for i in range(rows)]}))
    expected_a = list(range(rows))
    rng = random.Random(7)
    outcomes = set()
    # The change takes about 0.1 s here (longer under ASan): kills before, during and after it;
    # the last cycle kills only once the change was acknowledged.
    for cycle, delay in enumerate([0.01, 0.04, 0.07, 0.1, None]):
        done = []

        def change():
            try:
                done.append(patch(server, "t", {"add": {f"g{cycle}": {"dtype": "float32"}}})
                            .status_code)
            except requests.ConnectionError:
                pass

        thread = threading.Thread(target=change)
        thread.start()
        if delay is None:
            thread.join()
            assert done == [200]
        else:
            time.sleep(delay * rng.uniform(0.8, 1.2))
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        thread.join()
        server = Server(tmp_path, data_dir=data_dir, start_timeout=60)
        columns = requests.get(f"{server.url}/api/v1/table/t/schema").json()["columns"]
        changed = f"g{cycle}" in columns
        assert changed or not done, "an acknowledged change was lost"
        outcomes.add(changed)
        db = quiver.connect(server.url)
        assert db.read("t", ids, ["a"]).to_arrow().column("a").to_pylist() == expected_a
        assert db.describe("t")["rows"] == rows
    assert True in outcomes
    assert server.stop() == 0


def test_shared_memory_reads_follow_a_change(start_server):
    server = start_server()
    create(server, rows=10)
    shm = quiver.connect(f"shm://{server.data_dir}")
    before = shm.read("t", [1, 2]).to_arrow()
    assert before.column_names == ["a", "x", "s"]
    assert patch(server, "t", {"drop": ["x"], "alter": {"a": {"dtype": "int64"}},
                               "add": {"g": {"dtype": "float32", "default": 0.5}}}).ok
    after = shm.read("t", [1, 2]).to_arrow()
    assert after.column_names == ["a", "s", "g"]
    assert after.column("a").type == pa.int64() and after.column("a").to_pylist() == [1, 2]
    assert after.column("g").to_pylist() == [0.5, 0.5]
