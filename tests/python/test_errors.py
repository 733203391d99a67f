"""Every error class, with the same class and message from every backend; bad input changes
nothing."""

import asyncio

import pyarrow as pa
import pytest

import quiver
from quiverd import free_port

SCHEMA = pa.schema([("id", pa.string()), ("x", pa.int32()), ("v", pa.string(), False)])


def scenarios(name):
    """(label, call, expected class, message fragment): each call fails on a table `name`."""
    return [
        ("read unknown table", lambda db: db.read(name + "_nope", ["a"]),
         quiver.TableNotFound, f"table '{name}_nope' does not exist"),
        ("drop unknown table", lambda db: db.drop_table(name + "_nope"),
         quiver.TableNotFound, "does not exist"),
        ("write unknown table", lambda db: db.write(name + "_nope", {"id": ["a"]}),
         quiver.TableNotFound, "does not exist"),
        ("create existing", lambda db: db.create_table(name, SCHEMA, key="id"),
         quiver.TableExists, f"table '{name}' already exists"),
        ("nullable key", lambda db: db.create_table(name + "_k", {"key": "id", "columns": {
            "id": {"dtype": "utf8", "nullable": True}}}),
         quiver.SchemaError, "key column 'id' cannot be nullable"),
        ("unknown dtype", lambda db: db.create_table(name + "_k", {"key": "id", "columns": {
            "id": {"dtype": "utf8"}, "x": {"dtype": "float128"}}}),
         quiver.SchemaError, "float128"),
        ("unsupported arrow type", lambda db: db.create_table(
            name + "_k", pa.schema([("id", pa.string()), ("m", pa.map_(pa.string(), pa.int8()))]),
            key="id"), quiver.SchemaError, "column 'm': type map<string, int8> is not supported"),
        ("no key", lambda db: db.create_table(name + "_k", pa.schema([("id", pa.string())])),
         quiver.SchemaError, "no key column"),
        ("bad table name", lambda db: db.create_table("bad name!", SCHEMA, key="id"),
         quiver.SchemaError, "bad name!"),
        ("read unknown column", lambda db: db.read(name, ["a"], columns=["nope"]),
         quiver.ColumnNotFound, f"table '{name}' has no column 'nope'"),
        ("write unknown column", lambda db: db.write(name, {"id": ["a"], "nope": [1]}),
         quiver.ColumnNotFound, f"table '{name}' has no column 'nope'"),
        ("write uncastable", lambda db: db.write(name, {"id": ["a"], "x": ["not a number"],
                                                       "v": ["v"]}),
         quiver.SchemaError, "column 'x': cannot store utf8 as int32"),
        ("write overflow", lambda db: db.write(name, {"id": ["a"], "x": [2**40], "v": ["v"]}),
         quiver.SchemaError, "column 'x' row 0: cannot store 1099511627776 as int32"),
        ("float into an integer column", lambda db: db.write(name, {"id": ["a"], "x": [5.5],
                                                                   "v": ["v"]}),
         quiver.SchemaError, "column 'x' row 0: cannot store 5.5 as int32"),
        ("float into an integer column beside valid ones", lambda db: db.write(
            name, {"id": ["a", "b"], "x": [1, 2.25], "v": ["v", "w"]}),
         quiver.SchemaError, "column 'x' row 1: cannot store 2.25 as int32"),
        ("null in non-nullable", lambda db: db.write(name, {"id": ["a"], "v": [None]}),
         quiver.InvalidRequest, "'v'"),
        ("null key", lambda db: db.write(name, {"id": ["a", None], "v": ["v", "w"]}),
         quiver.InvalidRequest, "null"),
        ("wrong key type", lambda db: db.read(name, [1, 2]),
         quiver.InvalidRequest, "key"),
        ("keys not a list", lambda db: db.read(name, "abc"),
         quiver.InvalidRequest, "keys must be a list"),
        ("unequal columns", lambda db: db.write(name, {"id": ["a", "b"], "v": ["v"]}),
         quiver.InvalidRequest, "unequal length"),
        ("write of a number", lambda db: db.write(name, 42),
         quiver.InvalidRequest, "write() takes"),
    ]


def test_every_error_is_the_same_from_every_backend(all_dbs, name):
    for kind in ("embedded", "http"):  # Flight shares quiverd with HTTP
        all_dbs[kind].create_table(name, SCHEMA, key="id")
        all_dbs[kind].write(name, {"id": ["kept"], "x": [1], "v": ["value"]})
    for label, call, cls, fragment in scenarios(name):
        seen = {}
        for kind, db in all_dbs.items():
            with pytest.raises(cls) as info:
                call(db)
            assert fragment in str(info.value), (label, kind, str(info.value))
            assert info.value.code, (label, kind)
            seen[kind] = (type(info.value), str(info.value))
        assert len(set(seen.values())) == 1, (label, seen)
    # Nothing changed, and every backend still serves.
    for db in all_dbs.values():
        result = db.read(name, ["kept", "a"])
        assert result.to_arrow().to_pydict() == {"x": [1, None], "v": ["value", None]}
        assert db.list_tables().count(name) == 1


def test_error_classes_are_python_builtins_too():
    assert issubclass(quiver.TableNotFound, LookupError)
    assert issubclass(quiver.InvalidRequest, ValueError)
    assert issubclass(quiver.SchemaError, quiver.InvalidRequest)
    assert issubclass(quiver.ConnectionError, ConnectionError)
    assert issubclass(quiver.OutOfMemory, MemoryError)
    for cls in (quiver.TableNotFound, quiver.TableExists, quiver.InvalidRequest, quiver.SchemaError,
                quiver.ColumnNotFound, quiver.LimitExceeded, quiver.OutOfMemory, quiver.Unsupported,
                quiver.ServerError, quiver.ConnectionError):
        assert issubclass(cls, quiver.QuiverError)


def test_limit_exceeded(db, name):
    db.create_table(name, pa.schema([("id", pa.string()), ("x", pa.int32())]), key="id")
    with pytest.raises(quiver.InvalidRequest, match="key"):
        db.write(name, {"id": ["k" * 100_000], "x": [1]})


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_no_server_is_a_connection_error(scheme):
    db = quiver.connect(f"{scheme}://127.0.0.1:{free_port()}", timeout=5)
    with pytest.raises(quiver.ConnectionError, match="127.0.0.1"):
        db.list_tables()


def test_bad_urls():
    with pytest.raises(ValueError, match="http://, grpc:// or shm://"):
        quiver.connect("ftp://x")
    with pytest.raises(ValueError, match="http:// or grpc://"):
        asyncio.run(quiver.aio.connect("redis://x"))


def test_a_stopped_server_is_a_connection_error(start_server, name):
    server = start_server()
    db = quiver.connect(server.url)
    db.create_table(name, SCHEMA, key="id")
    server.stop()
    with pytest.raises(quiver.ConnectionError):
        db.read(name, ["a"])


def test_conversions_refuse_only_what_loses_information(all_dbs, name):
    import datetime
    schema = pa.schema([("flight_id", pa.string()), ("dep_time", pa.int64()),
                        ("at", pa.timestamp("ms")), ("ratio", pa.float32())])
    all_dbs["embedded"].create_table(name, schema, key="flight_id")
    all_dbs["http"].create_table(name, schema, key="flight_id")
    for kind, db in all_dbs.items():
        with pytest.raises(quiver.SchemaError, match="dep_time"):
            db.write(name, {"flight_id": [kind], "dep_time": [5.5]})
        with pytest.raises(quiver.SchemaError, match="at"):
            db.write(name, {"flight_id": [kind],
                            "at": [datetime.datetime(2026, 1, 1, 0, 0, 0, 1500)]})
        with pytest.raises(quiver.SchemaError, match="dep_time"):
            db.write(name, {"flight_id": [kind], "dep_time": [2.0**70]})
        assert db.read(name, [kind]).found.tolist() == [False], kind
        # Whole floats, whole milliseconds and float32 rounding lose nothing an int64, a
        # timestamp[ms] or a float32 column can hold.
        written = db.write(name, {"flight_id": [kind], "dep_time": [5.0], "ratio": [0.1],
                                  "at": [datetime.datetime(2026, 1, 1, 0, 0, 0, 2000)]})
        assert written.rows_written == 1
        assert db.read(name, [kind], columns=["dep_time"]).to_arrow().to_pydict() == \
            {"dep_time": [5]}
