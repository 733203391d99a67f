"""Row TTLs of feature tables through every backend (docs/engine.md#ttl): a table's default TTL, a
write's TTL, passive expiry, the error for a bad TTL, and the wire forms (HTTP ?ttl=, Flight
DoPut command {"table", "ttl"})."""

import asyncio
import json
import time

import pyarrow as pa
import pyarrow.flight as flight
import pytest
import redis
import requests

import quiver
import quiver.aio

SCHEMA = pa.schema([("id", pa.string()), ("x", pa.int64()), ("s", pa.string())])


def found(db, name, keys):
    return db.read(name, keys).found.tolist()


def test_table_ttl_and_write_ttl(db, name):
    # TTLs with room to spare on a loaded machine: 0.5 s for "short", 1.2 s by default.
    db.create_table(name, SCHEMA, key="id", ttl=1.2)
    assert db.table_schema(name)["ttl"] == 1.2
    assert db.schema(name).metadata == {b"quiver.ttl_ms": b"1200"}
    db.write(name, {"id": ["default", "long"], "x": [1, 2], "s": ["a", "b"]})
    db.write(name, {"id": ["long"], "x": [2]}, ttl=3600)  # a partial write sets the TTL too
    db.write(name, {"id": ["short"], "x": [3], "s": ["c"]}, ttl=0.5)
    assert found(db, name, ["default", "long", "short"]) == [True, True, True]
    time.sleep(0.6)
    assert found(db, name, ["default", "long", "short"]) == [True, True, False]
    time.sleep(0.7)
    result = db.read(name, ["default", "long", "short"])
    assert result.found.tolist() == [False, True, False]
    assert result.to_arrow().to_pydict()["s"] == [None, "b", None]
    assert db.delete(name, ["default", "long"]) == 1, "an expired row is not counted"
    # An expired key written again is a new row: the other columns do not come back.
    db.write(name, {"id": ["short"], "x": [30]})
    assert db.read(name, ["short"]).to_arrow().to_pydict() == {"x": [30], "s": [None]}


@pytest.mark.parametrize("ttl", [0, -1, 1e12, float("nan"), "60", True])
def test_bad_ttls_are_refused_and_change_nothing(db, name, ttl):
    db.create_table(name, SCHEMA, key="id")
    with pytest.raises(quiver.InvalidRequest, match="ttl must be a number of seconds"):
        db.write(name, {"id": ["a"], "x": [1]}, ttl=ttl)
    assert found(db, name, ["a"]) == [False]
    with pytest.raises(quiver.InvalidRequest, match="ttl"):
        db.create_table(name + "_x", SCHEMA, key="id", ttl=ttl)
    assert name + "_x" not in db.list_tables()


def test_wire_forms(quiverd, name):
    with quiver.connect(quiverd.url) as db:
        db.create_table(name, SCHEMA, key="id")
    url = f"{quiverd.url}/api/v1/table/{name}/write"
    body = {"columns": {"id": ["h"], "x": [1], "s": ["v"]}}
    assert requests.put(url + "?ttl=0.5", json=body).json() == {"rows_written": 1,
                                                                 "rows_skipped": 0}
    for bad, text in (("abc", "not 'abc'"), ("0", "from 0.001 to 100 years")):
        response = requests.put(f"{url}?ttl={bad}", json=body)
        assert response.status_code == 400 and text in response.json()["error"], response.text
    assert requests.put(url + "?ttl=1&ttl=2", json=body).status_code == 400
    client = flight.connect(quiverd.flight_url)
    table = pa.table({"id": ["f"], "x": [2], "s": ["w"]})
    writer, _ = client.do_put(
        flight.FlightDescriptor.for_command(json.dumps({"table": name, "ttl": 0.5})), table.schema)
    writer.write_table(table)
    writer.close()
    with pytest.raises(pa.ArrowInvalid, match="belong to writes"):
        client.do_get(flight.Ticket(json.dumps({"table": name, "ttl": 5}))).read_all()
    r = redis.Redis(port=quiverd.resp_port, decode_responses=True)
    with quiver.connect(quiverd.url) as db:
        assert found(db, name, ["h", "f"]) == [True, True]
        assert r.hgetall(f"{name}:h") == {"x": "1", "s": "v"}
        time.sleep(0.6)
        assert found(db, name, ["h", "f"]) == [False, False]
        assert r.hgetall(f"{name}:h") == {}, "RESP reads expire rows alike"
    client.close()
    r.close()


def test_async_client_writes_with_a_ttl(quiverd, name):
    async def scenario():
        async with await quiver.aio.connect(quiverd.url) as db:
            await db.create_table(name, SCHEMA, key="id", ttl=60)
            await db.write(name, {"id": ["a"], "x": [1]}, ttl=0.5)
            assert (await db.read(name, ["a"])).found.tolist() == [True]
            await asyncio.sleep(0.6)
            assert (await db.read(name, ["a"])).found.tolist() == [False]

    asyncio.run(scenario())


def test_active_expiry_reclaims_rows_nobody_reads(tmp_path):
    with quiver.open(tmp_path / "data") as db:
        db.create_table("t", SCHEMA, key="id")
        db.write("t", {"id": [f"k{i}" for i in range(2000)], "x": list(range(2000))}, ttl=0.1)
        db.write("t", {"id": ["kept"], "x": [1]})
        deadline = time.monotonic() + 5
        stats = db._backend.stats  # the embedded engine's internal counts
        while stats("t")["rows"] > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = stats("t")
        assert stats["rows"] == 1 and stats["expired"] == 2000, stats
    with quiver.open(tmp_path / "data") as db:  # and after a restart: the same
        assert found(db, "t", ["kept", "k1"]) == [True, False]


def test_quiverd_reclaims_expired_rows_and_counts_them(quiverd, name):
    with quiver.connect(quiverd.url) as db:
        db.create_table(name, SCHEMA, key="id")
        db.write(name, {"id": [f"k{i}" for i in range(500)], "x": list(range(500))}, ttl=1)
        db.write(name, {"id": ["kept"], "x": [1]})

    def metric(family):
        for line in requests.get(quiverd.url + "/metrics").text.splitlines():
            if line.startswith(f'{family}{{table="{name}"}}'):
                return float(line.split()[-1])
        return None

    assert metric("quiver_table_rows_with_ttl") == 500
    deadline = time.monotonic() + 5
    while metric("quiver_table_rows") != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric("quiver_table_rows") == 1, "active expiry reclaimed rows nobody read"
    assert metric("quiver_table_expired_rows_total") == 500
    assert metric("quiver_table_rows_with_ttl") == 0
