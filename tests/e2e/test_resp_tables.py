"""Feature tables through the Redis protocol of the real quiverd: a row as a hash (HGETALL
<table>:<key>, HMGET, HGET, ...) and QUIVER.FETCH's Arrow IPC stream, checked against what HTTP
returns for the same table (docs/resp.md, "Feature tables")."""

import struct

import numpy as np
import pyarrow as pa
import pytest
import redis
import requests

import quiver

SCHEMA = pa.schema([
    pa.field("user", pa.string(), nullable=False),
    pa.field("clicks", pa.int64()),
    pa.field("score", pa.float32()),
    pa.field("ratio", pa.float64()),
    pa.field("active", pa.bool_()),
    pa.field("country", pa.string()),
    pa.field("blob", pa.binary()),
    pa.field("history", pa.list_(pa.float32())),
    pa.field("embedding", pa.list_(pa.float32(), 4)),
    pa.field("seen", pa.timestamp("ms")),
])
ROWS = pa.table({
    "user": ["u1", "u2", "u3"],
    "clicks": [10, None, -3],
    "score": [0.1, 2.5, None],
    "ratio": [1 / 3, 1e300, -0.0],
    "active": [True, False, None],
    "country": ["fr", None, "日本"],
    "blob": [b"\x00\xff", None, b""],
    "history": [[1.5, -2.0], [], None],
    "embedding": [[0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4], None],
    "seen": pa.array([1_700_000_000_123, None, 0], pa.timestamp("ms")),
}, schema=SCHEMA)


def as_text(value, field):
    """What a hash holds for a value read over HTTP/Arrow (tables.h)."""
    if value is None:
        return None
    if pa.types.is_boolean(field.type):
        return b"true" if value else b"false"
    if pa.types.is_list(field.type) or pa.types.is_fixed_size_list(field.type):
        return np.asarray(value, dtype="<f4").tobytes()
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return str(value).encode()


@pytest.fixture
def loaded(server):
    client = quiver.connect(server.url)
    client.create_table("users", SCHEMA, key="user")
    client.write("users", ROWS)
    numbers = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("v", pa.float64())])
    client.create_table("items", numbers, key="id")
    client.write("items", pa.table({"id": [7, -1], "v": [0.5, 1.25]}, schema=numbers))
    r = redis.Redis(port=server.resp_port)
    yield server, client, r
    r.close()
    client.close()


def test_a_row_reads_as_a_hash_with_the_values_http_returns(loaded):
    server, client, r = loaded
    http = client.read("users", ["u1", "u2", "u3"]).to_arrow().to_pylist()
    for key, row in zip(["u1", "u2", "u3"], http):
        got = r.hgetall(f"users:{key}")
        expected_fields = {name.encode() for name, value in row.items() if value is not None}
        assert set(got) == expected_fields, key  # a null is no field
        for name, value in row.items():
            field = SCHEMA.field(name)
            if value is None:
                continue
            text = got[name.encode()]
            if pa.types.is_floating(field.type):  # a decimal that reads back as the stored value
                dtype = np.float32 if pa.types.is_float32(field.type) else np.float64
                assert dtype(text.decode()) == dtype(value), (name, text, value)
            elif pa.types.is_timestamp(field.type):
                assert int(text) == pa.scalar(value, field.type).value
            else:
                assert text == as_text(value, field), (name, text, value)
    # Embeddings come back as packed little-endian float32, the layout Redis users store.
    embedding = r.hget("users:u1", "embedding")
    assert struct.unpack("<4f", embedding) == tuple(np.float32([0.1, 0.2, 0.3, 0.4]))
    assert r.hmget("users:u1", ["clicks", "nope", "country", "blob"]) == [b"10", None, b"fr",
                                                                          b"\x00\xff"]
    assert r.hget("users:u2", "clicks") is None  # null
    assert r.hlen("users:u2") == len([v for v in http[1].values() if v is not None])
    assert r.hexists("users:u1", "score") and not r.hexists("users:u3", "score")
    assert set(r.hkeys("users:u1")) == {f.name.encode() for f in SCHEMA if f.name != "user"}
    assert r.hget("items:7", "v") == b"0.5" and r.hgetall("items:-1") == {b"v": b"1.25"}


def test_missing_rows_tables_and_bad_keys_read_as_missing_hashes(loaded):
    _, _, r = loaded
    assert r.hgetall("users:nobody") == {}
    assert r.hgetall("nosuchtable:u1") == {}
    assert r.hgetall("items:seven") == {}  # not an int64 key
    assert r.hmget("users:nobody", ["clicks"]) == [None]
    assert r.hlen("users") == 0 and r.hget("users", "clicks") is None  # no separator


def test_keyspace_keys_shadow_rows(loaded):
    server, client, r = loaded
    r.set("users:u2", "a string")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.hgetall("users:u2")
    assert r.type("users:u2") == b"string"
    assert r.delete("users:u2") == 1  # the keyspace's key only
    assert r.hget("users:u2", "score") == b"2.5"  # the table's row again
    assert r.type("users:u2") == b"hash"
    # A keyspace hash of a table's name takes HSET while it exists.
    r.execute_command("HSET", "users:u1", "clicks", "999")
    assert client.read("users", ["u1"]).to_arrow().column("clicks").to_pylist() == [999]


def test_the_generic_commands_see_table_rows(loaded):
    server, client, r = loaded
    assert r.exists("users:u1") == 1 and r.exists("users:nobody") == 0
    assert r.exists("users:u1", "users:u2", "nosuch:u1", "items:7") == 3
    assert r.type("users:u1") == b"hash" and r.type("users:nobody") == b"none"
    assert r.ttl("users:u1") == -1 and r.pttl("users:u1") == -1 and r.ttl("users:nobody") == -2
    client.write("users", pa.table({"user": ["brief"], "clicks": [1]}), ttl=100)
    assert 99 <= r.ttl("users:brief") <= 100 and 98_000 < r.pttl("users:brief") <= 100_000
    assert r.delete("users:u3", "users:nobody") == 1
    assert not client.read("users", ["u3"]).found[0] and r.delete("users:u3") == 0
    assert r.delete("items:seven") == 0  # not an int64 key: no such row


def test_hset_writes_a_rows_columns_typed(loaded):
    server, client, r = loaded
    assert r.hset("users:u1", mapping={"clicks": "42", "score": "1.5"}) == 0  # both were set
    assert r.hset("users:u2", "clicks", "7") == 1  # null before
    embedding = struct.pack("<4f", 1, 2, 3, 4.5)
    assert r.hset("users:new", mapping={"active": "true", "embedding": embedding,
                                        "seen": "1700000000000", "blob": b"\x00\x01",
                                        "history": struct.pack("<2f", 0.5, 1)}) == 5
    got = client.read("users", ["u1", "u2", "new"]).to_arrow().to_pylist()
    assert got[0]["clicks"] == 42 and got[0]["score"] == pytest.approx(1.5)
    assert got[0]["country"] == "fr", "the other columns keep their values"
    assert got[1]["clicks"] == 7
    assert got[2]["active"] is True and got[2]["embedding"] == [1, 2, 3, 4.5]
    assert got[2]["blob"] == b"\x00\x01" and got[2]["history"] == [0.5, 1]
    assert r.hget("users:new", "seen") == b"1700000000000"
    assert r.hset("items:9", "v", "2.25") == 1 and r.hget("items:9", "v") == b"2.25"
    # Values that do not fit, unknown and key columns: an error naming it, nothing written.
    for field, value, error in [
            ("clicks", "abc", "column 'clicks': 'abc' is not a number"),
            ("clicks", "1.5", "column 'clicks'"),
            ("score", "1e300", "out of range for float32"),
            ("embedding", b"\x00" * 12, "not packed|has 3 elements"),
            ("active", "maybe", "is not a bool"),
            ("nope", "1", "has no column 'nope'"),
            ("user", "x", "is the key")]:
        with pytest.raises(redis.ResponseError, match=error):
            r.hset("users:u1", mapping={"clicks": "5", field: value})
    with pytest.raises(redis.ResponseError, match="is int64: 'seven'"):
        r.hset("items:seven", "v", "1")
    assert client.read("users", ["u1"]).to_arrow().column("clicks").to_pylist() == [42]
    assert r.ping()


def test_scan_match_lists_a_tables_rows(loaded):
    server, client, r = loaded
    r.set("users:keyspace-key", "x")
    r.set("other", "y")
    keys = set(r.scan_iter(match="users:*", count=2))
    assert keys == {b"users:u1", b"users:u2", b"users:u3", b"users:keyspace-key"}
    assert set(r.scan_iter(match="users:u*", count=1)) == {b"users:u1", b"users:u2", b"users:u3"}
    assert set(r.scan_iter(match="items:*")) == {b"items:7", b"items:-1"}
    assert set(r.scan_iter(match="users:*", _type="string")) == {b"users:keyspace-key"}
    assert set(r.scan_iter(match="*")) == {b"users:keyspace-key", b"other"}, \
        "a pattern that names no table scans the keyspace only"


def test_the_table_view_of_a_composite_key(start_server):
    server = start_server()
    client = quiver.connect(server.url)
    client.create_table("pairs", {"key": ["user", "item"], "columns": {
        "user": {"dtype": "int64"}, "item": {"dtype": "utf8"}, "n": {"dtype": "int32"}}})
    client.write("pairs", pa.table({"user": [1, 2], "item": ["a", "b:c"], "n": [5, 6]}))
    r = redis.Redis(port=server.resp_port)
    assert set(r.scan_iter(match="pairs:*")) == {b"pairs:1:a", b"pairs:2:b:c"}
    assert r.exists("pairs:2:b:c") == 1 and r.type("pairs:1:a") == b"hash"
    assert r.hset("pairs:3:z", "n", "9") == 1
    assert client.read("pairs", {"user": [3], "item": ["z"]}).to_arrow().column(
        "n").to_pylist() == [9]
    assert r.delete("pairs:1:a") == 1 and r.exists("pairs:1:a") == 0
    r.close()
    client.close()


def test_quiver_fetch_returns_the_http_fetch_as_arrow_ipc(loaded):
    server, client, r = loaded
    keys = ["u3", "nobody", "u1", "u1"]
    raw = r.execute_command("QUIVER.FETCH", "users", len(keys), *keys)
    got = pa.ipc.open_stream(raw).read_all()
    http = requests.post(f"{server.url}/api/v1/table/users/fetch", json={"keys": keys},
                         headers={"Accept": "application/vnd.apache.arrow.stream"})
    assert http.status_code == 200, http.text
    expected = pa.ipc.open_stream(http.content).read_all()
    assert got.equals(expected) and got.num_rows == 4
    some = pa.ipc.open_stream(r.execute_command(
        "QUIVER.FETCH", "users", 2, "u1", "nobody", "FOUND", "COLUMNS", "score", "embedding"
    )).read_all()
    assert some.column_names == ["score", "embedding", "_found"]
    assert some.column("_found").to_pylist() == [True, False]
    assert some.column("score").to_pylist() == [pytest.approx(0.1), None]
    ints = pa.ipc.open_stream(r.execute_command("QUIVER.FETCH", "items", 2, "-1", "7")).read_all()
    assert ints.column("v").to_pylist() == [1.25, 0.5]


@pytest.mark.parametrize("args, error", [
    (["nosuch", 1, "k"], "nosuch"),
    (["users", 1, "u1", "COLUMNS", "nope"], "nope"),
    (["items", 1, "seven"], "'seven' is not an int64"),
    (["users", 0, "u1"], "numkeys must be a positive integer"),
    (["users", "x", "u1"], "numkeys must be a positive integer"),
    (["users", 3, "u1"], "numkeys is larger"),
    (["users", 1, "u1", "BOGUS"], "syntax error"),
])
def test_quiver_fetch_errors_name_what_was_wrong(loaded, args, error):
    _, _, r = loaded
    with pytest.raises(redis.ResponseError, match=error):
        r.execute_command("QUIVER.FETCH", *args)
    assert r.ping()


def test_the_separator_is_configurable(start_server):
    server = start_server("--resp-table-separator", "/")
    client = quiver.connect(server.url)
    client.create_table("t", pa.schema([pa.field("k", pa.string(), nullable=False),
                                        pa.field("x", pa.int64())]), key="k")
    client.write("t", pa.table({"k": ["a:b"], "x": [5]}))
    r = redis.Redis(port=server.resp_port)
    assert r.hgetall("t/a:b") == {b"x": b"5"}
    assert r.hgetall("t:a:b") == {}
    r.close()
    client.close()
