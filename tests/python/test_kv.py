"""The embedded key-value API (quiver.open().kv): Redis's semantics in process, checked on their
own and against the real quiverd's RESP server given the same commands (docs/python.md)."""

import time

import pytest
import redis

import quiver


@pytest.fixture
def kv():
    db = quiver.open()
    yield db.kv
    db.close()


def test_strings_and_ttls(kv):
    assert kv.set("k", b"v", ex=60) is True
    assert kv.get("k") == b"v" and 59 <= kv.ttl("k") <= 60
    assert kv.set("k", "w") is True and kv.ttl("k") == -1  # an overwrite clears the TTL
    kv.set("k", "x", px=50_000)
    assert kv.set("k", "y", keepttl=True) and kv.pttl("k") > 40_000
    assert kv.set("k", "z", nx=True) is None and kv.get("k") == b"y"
    assert kv.set("new", "1", xx=True) is None and kv.exists("new") == 0
    assert kv.set("k", "old?", get=True) == b"y"
    assert kv.ttl("missing") == -2 and kv.get("missing") is None
    with pytest.raises(quiver.InvalidRequest, match="invalid expire time in 'set' command"):
        kv.set("k", "v", ex=0)
    assert kv.expire("k", 0) is True and kv.exists("k") == 0  # a past time deletes the key
    kv.set("short", "v", px=50)
    time.sleep(0.08)
    assert kv.get("short") is None  # expired at once
    assert kv.incr("n") == 1 and kv.incr("n", 10) == 11
    assert kv.incrbyfloat("f", 0.5) == 0.5
    assert kv.append("s", "ab") == 2 and kv.strlen("s") == 2
    assert kv.mset({"a": 1, "b": 2.5}) and kv.mget(["a", "b", "nope"]) == [b"1", b"2.5", None]
    assert kv.getdel("a") == b"1" and kv.exists("a") == 0
    assert kv.rename("b", "c") and kv.get("c") == b"2.5"
    assert kv.persist("c") is False
    assert kv.expire("c", 100) and kv.persist("c") and kv.ttl("c") == -1
    assert kv.expire("c", 100, nx=True) is True and kv.expire("c", 50, gt=True) is False
    assert kv.delete("c", "n", "nope") == 2
    assert kv.type("s") == "string" and kv.type("nope") == "none"


def test_hashes_keys_and_errors(kv):
    assert kv.hset("h", "f", "1") == 1
    assert kv.hset("h", mapping={"g": b"\x00\xff", "f": 2}) == 1
    assert kv.hgetall("h") == {b"f": b"2", b"g": b"\x00\xff"}
    assert kv.hget("h", "f") == b"2" and kv.hmget("h", ["g", "x"]) == [b"\x00\xff", None]
    assert kv.hincrby("h", "f", 5) == 7 and kv.hlen("h") == 2 and kv.hexists("h", "g")
    assert kv.hdel("h", "f", "g") == 2 and kv.exists("h") == 0  # an emptied hash is gone
    for i in range(250):
        kv.set(f"user:{i}", i)
    assert sorted(kv.scan_iter(match="user:*", count=7)) == sorted(kv.keys("user:*"))
    assert len(kv.keys("user:*")) == 250 and kv.dbsize() == 250
    kv.hset("hash", "f", "v")
    with pytest.raises(quiver.InvalidRequest, match="WRONGTYPE"):
        kv.get("hash")
    with pytest.raises(quiver.InvalidRequest, match="unknown command 'NOPE'"):
        kv.execute("NOPE")
    with pytest.raises(TypeError, match="not list"):
        kv.set("k", [1])
    assert kv.flushall() and kv.dbsize() == 0


def test_memory_limit_and_eviction(kv):
    for i in range(1000):
        kv.set(f"k{i}", "x" * 100)
    used = kv.info()["used_memory"]
    kv.config_set("maxmemory", used)
    kv.set("over", "x" * 1000)
    with pytest.raises(quiver.OutOfMemory, match="command not allowed when used memory"):
        kv.set("refused", "v")
    kv.config_set("maxmemory-policy", "allkeys-lru")
    for i in range(2000):
        kv.set(f"n{i}", "x" * 100)
    info = kv.info()
    assert info["evicted"] > 1000 and info["used_memory"] <= used + 200
    assert info["maxmemory_policy"] == "allkeys-lru"


def test_closed_engine_and_remote_clients(kv, start_server):
    server = start_server()
    db = quiver.open()
    db.close()
    with pytest.raises(quiver.InvalidRequest, match="closed"):
        db.kv.get("k")
    remote = quiver.connect(server.url)
    with pytest.raises(quiver.Unsupported, match="RESP port"):
        remote.kv
    remote.close()


# The same commands through the embedded API and through quiverd's RESP server (RESP3) give the
# same replies, errors included.
SCRIPT = [
    ["SET", "k", "v", "EX", "100"], ["TTL", "k"], ["SET", "k", "v2"], ["TTL", "k"],
    ["SET", "k", "v3", "PX", "100000"], ["SET", "k", "v4", "KEEPTTL"], ["GET", "k"],
    ["SET", "k", "x", "NX"], ["SET", "k", "y", "XX", "GET"], ["SET", "k", "v", "EX", "0"],
    ["SET", "k", "v", "EX", "-1"], ["SET", "k", "v", "KEEPTTL", "EX", "1"], ["EXPIRE", "k", "-5"],
    ["EXISTS", "k"], ["INCR", "n"], ["INCRBY", "n", "abc"], ["INCRBYFLOAT", "f", "1.5"],
    ["APPEND", "n", "x"], ["INCR", "n"], ["MSET", "a", "1", "b", "2"], ["MGET", "a", "b", "c"],
    ["HSET", "h", "f", "1", "g", "2"], ["HGETALL", "h"], ["HMGET", "h", "f", "nope"],
    ["GET", "h"], ["HINCRBY", "h", "f", "x"], ["HDEL", "h", "f", "g"], ["EXISTS", "h"],
    ["RENAME", "nope", "x"], ["RENAME", "a", "z"], ["TYPE", "z"], ["GETEX", "z", "PERSIST"],
    ["GETDEL", "z"], ["EXPIRE", "b", "100", "NX"], ["EXPIRE", "b", "50", "GT"],
    ["PERSIST", "b"], ["DBSIZE"], ["GET"], ["NOSUCH", "x"], ["SET", "k", "v", "BOGUS"],
    ["CONFIG", "GET", "maxmemory-policy"], ["CONFIG", "SET", "maxmemory-policy", "lru"],
    ["SELECT", "1"], ["PING"], ["ECHO", "hi"], ["DEL", "b", "n", "f"], ["DBSIZE"],
]


def run(call, command):
    try:
        return normal(call(*command))
    except (redis.ResponseError, quiver.QuiverError) as e:
        return ("error", str(e))


def normal(reply):
    """Status replies: str from the embedded API, bytes from redis-py."""
    if isinstance(reply, str):
        return reply.encode()
    if isinstance(reply, list):
        return [normal(r) for r in reply]
    if isinstance(reply, dict):
        return {normal(k): normal(v) for k, v in reply.items()}
    return reply


def test_embedded_replies_equal_the_wires(kv, start_server):
    server = start_server()
    r = redis.Redis(port=server.resp_port, protocol=3)
    connection = r.connection_pool.get_connection()

    def wire_call(*command):  # the parsed reply, without redis-py's per-command conversions
        connection.send_command(*command)
        return connection.read_response()

    for command in SCRIPT:
        embedded = run(kv.execute, command)
        wire = run(wire_call, command)
        if isinstance(wire, tuple) and isinstance(embedded, tuple):
            # redis-py strips a few error prefixes into the exception class (OOM, ...).
            assert embedded[1].endswith(wire[1]), command
        else:
            assert embedded == wire, (command, embedded, wire)
    r.connection_pool.release(connection)
    r.close()


def test_keyspace_is_durable_with_a_data_directory(tmp_path):
    data = tmp_path / "data"
    with quiver.open(data) as db:
        db.kv.set("k", b"v", ex=600)
        db.kv.hset("h", mapping={"a": 1, "b": "x"})
        db.kv.set("gone", "1")
        db.kv.delete("gone")
        db.kv.incr("n", 41)
    with quiver.open(data) as db:
        assert db.kv.get("k") == b"v" and 590 < db.kv.ttl("k") <= 600
        assert db.kv.hgetall("h") == {b"a": b"1", b"b": b"x"}
        assert db.kv.get("gone") is None and db.kv.incr("n") == 42
        db.snapshot()
        db.kv.set("after", "snapshot")
    with quiver.open(data) as db:
        assert sorted(db.kv.keys()) == [b"after", b"h", b"k", b"n"]
    assert list((data / "snapshots").glob("keyspace-*.kv"))
