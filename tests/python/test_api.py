"""The Python API, run against every backend: embedded engine, HTTP and Arrow Flight."""

import datetime
import threading

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import quiver

EVERY_TYPE = pa.schema([
    pa.field("id", pa.string(), False, {"quiver.key": "true"}),
    ("b", pa.bool_()),
    ("i8", pa.int8()), ("i16", pa.int16()), ("i32", pa.int32()), ("i64", pa.int64()),
    ("u8", pa.uint8()), ("u16", pa.uint16()), ("u32", pa.uint32()), ("u64", pa.uint64()),
    ("f32", pa.float32()), ("f64", pa.float64()),
    ("s", pa.string()), ("bin", pa.binary()), ("d", pa.date32()),
    ("ts", pa.timestamp("ms", tz="Europe/Paris")), ("ts_ns", pa.timestamp("ns")),
    ("lst", pa.list_(pa.float32())), ("emb", pa.list_(pa.float32(), 4)),
])


def every_type_rows():
    paris = datetime.timezone(datetime.timedelta(hours=1))
    return pa.table({
        "id": ["a", "b", "c"],
        "b": [True, None, False],
        "i8": [-128, None, 127], "i16": [-32768, 0, None], "i32": [None, 1, -2],
        "i64": [2**63 - 1, None, -(2**63)], "u8": [255, 0, None], "u16": [None, 65535, 1],
        "u32": [4294967295, None, 0], "u64": [2**64 - 1, 0, None],
        "f32": [1.5, None, -0.0], "f64": [float("inf"), 2.25, None],
        "s": ["", None, "héllo wörld"], "bin": [b"\x00\xff", b"", None],
        "d": [datetime.date(1970, 1, 1), None, datetime.date(2026, 11, 21)],
        "ts": [datetime.datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=paris), None,
               datetime.datetime(1969, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)],
        "ts_ns": [1, None, 1_700_000_000_123_456_789],
        "lst": [[1.0, 2.0], [], None], "emb": [[1, 2, 3, 4], None, [0.5, 0.25, 0, -1]],
    }, schema=pa.schema([f.with_nullable(True) if f.name != "id" else f for f in EVERY_TYPE]))


def test_tables_are_created_listed_described_and_dropped(db, name):
    stored = db.create_table(name, EVERY_TYPE)
    assert stored == EVERY_TYPE.set(0, EVERY_TYPE.field(0))  # key marked, not nullable
    assert stored.field("id").metadata == {b"quiver.key": b"true"}
    assert name in db.list_tables()
    assert db.schema(name).equals(stored, check_metadata=True)
    assert db.table_schema(name)["key"] == "id"
    db.drop_table(name)
    assert name not in db.list_tables()
    with pytest.raises(quiver.TableNotFound, match=f"table '{name}' does not exist"):
        db.schema(name)


def test_create_table_takes_murr_table_schema_and_key_argument(db, name):
    spec = {"key": "doc", "columns": {"doc": {"dtype": "int64"}, "x": {"dtype": "float32"}}}
    assert db.create_table(name, spec).field("doc").type == pa.int64()
    schema = pa.schema([("k", pa.string()), ("at", pa.timestamp("us"), False), ("v", pa.int32())])
    stored = db.create_table(name + "_2", schema, key="k", event_time="at")
    assert stored.field("at").metadata == {b"quiver.event_time": b"true"}
    assert db.table_schema(name + "_2")["event_time"] == "at"


def test_every_dtype_round_trips(db, name):
    db.create_table(name, EVERY_TYPE)
    rows = every_type_rows()
    assert db.write(name, rows) == (3, 0)
    result = db.read(name, ["c", "a", "b"])
    expected = rows.take([2, 0, 1]).drop_columns(["id"])
    got = result.to_arrow()
    assert got.column_names == expected.column_names
    for column in expected.column_names:
        assert got.column(column).equals(expected.column(column)), column
    assert got.schema.field("ts").type == pa.timestamp("ms", tz="Europe/Paris")
    assert result.found.tolist() == [True, True, True]


def test_missing_and_duplicate_keys(db, name):
    db.create_table(name, pa.schema([("id", pa.string()), ("x", pa.int32())]), key="id")
    db.write(name, {"id": ["a", "b"], "x": [1, 2]})
    result = db.read(name, ["b", "zz", "a", "b", ""])
    assert result.to_arrow().column("x").to_pylist() == [2, None, 1, 2, None]
    assert result.found.tolist() == [True, False, True, True, False]
    assert result.found_count == 3
    assert len(db.read(name, [])) == 0


def test_partial_writes_keep_other_columns(db, name):
    db.create_table(name, pa.schema([("id", pa.string()), ("x", pa.int32()), ("y", pa.string())]),
                    key="id")
    db.write(name, {"id": ["a", "b"], "x": [1, 2], "y": ["p", "q"]})
    db.write(name, {"id": ["a", "c"], "y": ["p2", "r"]})
    result = db.read(name, ["a", "b", "c"], columns=["y", "x"])
    assert result.column_names == ["y", "x"]
    assert result.to_arrow().to_pydict() == {"y": ["p2", "q", "r"], "x": [1, 2, None]}


def test_last_occurrence_of_a_repeated_key_wins(db, name):
    db.create_table(name, pa.schema([("id", pa.int64()), ("v", pa.string())]), key="id")
    assert db.write(name, {"id": [7, 8, 7], "v": ["one", "two", "three"]}).rows_written == 3
    assert db.read(name, [7, 8])["v"].to_pylist() == ["three", "two"]


def test_event_time_guard_skips_older_rows(db, name):
    db.create_table(name, pa.schema([("id", pa.string()), ("at", pa.timestamp("ms"), False),
                                     ("v", pa.int32())]), key="id", event_time="at")
    t = datetime.datetime(2026, 1, 1)
    db.write(name, {"id": ["a", "b"], "at": [t, t], "v": [1, 2]})
    older, newer = t - datetime.timedelta(seconds=1), t + datetime.timedelta(seconds=1)
    result = db.write(name, {"id": ["a", "b"], "at": [older, newer], "v": [10, 20]})
    assert result == quiver.WriteResult(rows_written=1, rows_skipped=1)
    assert db.read(name, ["a", "b"])["v"].to_pylist() == [1, 20]


def test_delete(db, name):
    db.create_table(name, pa.schema([("id", pa.string()), ("x", pa.int32())]), key="id")
    db.write(name, {"id": ["a", "b", "c"], "x": [1, 2, 3]})
    assert db.delete(name, ["a", "zz", "c"]) == 2
    assert db.read(name, ["a", "b", "c"]).found.tolist() == [False, True, False]


@pytest.mark.parametrize("kind", ["table", "batch", "pandas", "polars", "dict", "stream"])
def test_write_takes_every_input_kind(db, name, kind):
    db.create_table(name, pa.schema([("id", pa.string()), ("x", pa.float32()),
                                     ("when", pa.timestamp("ms", tz="UTC")),
                                     ("emb", pa.list_(pa.float32(), 2))]), key="id")
    when = [datetime.datetime(2026, 5, 1, tzinfo=datetime.timezone.utc)] * 2
    columns = {"id": ["a", "b"], "x": [0.5, None], "when": when,
               "emb": np.array([[1, 2], [3, 4]], dtype=np.float32)}
    if kind == "dict":
        data = columns
    elif kind == "pandas":
        data = pd.DataFrame({"id": ["a", "b"], "x": [0.5, np.nan], "when": pd.to_datetime(when),
                             "emb": [[1.0, 2.0], [3.0, 4.0]]})
    elif kind == "polars":
        data = pl.DataFrame({"id": ["a", "b"], "x": [0.5, None], "when": when,
                             "emb": [[1.0, 2.0], [3.0, 4.0]]})
    else:
        columns["emb"] = pa.FixedSizeListArray.from_arrays(pa.array([1, 2, 3, 4], pa.float32()), 2)
        table = pa.table(columns)
        data = {"table": table, "batch": table.to_batches()[0],
                "stream": pa.RecordBatchReader.from_batches(table.schema, table.to_batches())}[kind]
    assert db.write(name, data).rows_written == 2
    result = db.read(name, ["b", "a"]).to_arrow()
    assert result.column("x").to_pylist() == [None, 0.5]
    assert result.column("emb").to_pylist() == [[3, 4], [1, 2]]
    assert result.column("when").to_pylist() == when


@pytest.mark.parametrize("kind", ["list", "tuple", "numpy", "arrow", "chunked", "pandas", "polars"])
def test_read_takes_every_key_kind(db, name, kind):
    db.create_table(name, pa.schema([("id", pa.int64()), ("x", pa.int32())]), key="id")
    db.write(name, {"id": [1, 2, 3], "x": [10, 20, 30]})
    keys = [3, 1, 99]
    given = {"list": keys, "tuple": tuple(keys), "numpy": np.array(keys, dtype=np.int32),
             "arrow": pa.array(keys), "chunked": pa.chunked_array([[3], [1, 99]]),
             "pandas": pd.Series(keys), "polars": pl.Series(keys)}[kind]
    assert db.read(name, given)["x"].to_pylist() == [30, 10, None]


def test_conversions_to_pandas_polars_numpy(db, name):
    db.create_table(name, pa.schema([("id", pa.string())] + [(f"f{i}", pa.float32())
                                                              for i in range(4)]), key="id")
    db.write(name, {"id": ["a", "b"], **{f"f{i}": [i, i + 0.5] for i in range(4)}})
    result = db.read(name, ["b", "missing", "a"])
    frame = result.to_pandas()
    assert list(frame.columns) == ["f0", "f1", "f2", "f3"]
    assert frame["f1"].tolist()[0] == 1.5 and np.isnan(frame["f1"].tolist()[1])
    assert result.to_polars()["f3"].to_list() == [3.5, None, 3.0]
    matrix = result.to_numpy()
    assert matrix.shape == (3, 4) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix[0], [0.5, 1.5, 2.5, 3.5])
    assert np.isnan(matrix[1]).all()
    np.testing.assert_array_equal(matrix[2], [0, 1, 2, 3])
    assert result.to_numpy(dtype=np.float64).dtype == np.float64
    # Any Arrow consumer takes the result itself.
    assert pa.table(result).equals(result.to_arrow())
    assert pl.DataFrame(result).shape == (3, 4)


def test_to_numpy_shares_the_engines_buffer(db, name):
    """The matrix is a view of the buffer the engine produced (embedded) or of the received
    message (remote): no copy either way."""
    db.create_table(name, pa.schema([("id", pa.int64())] + [(f"f{i}", pa.float32())
                                                             for i in range(10)]), key="id")
    keys = np.arange(1000, dtype=np.int64)
    db.write(name, {"id": keys, **{f"f{i}": keys.astype(np.float32) * i for i in range(10)}})
    result = db.read(name, np.append(keys[::-1][:999], 5000))  # 1000 keys, the last missing
    matrix = result.to_numpy()
    first = result.to_arrow().column(0).chunk(0).buffers()[1]
    assert matrix.__array_interface__["data"][0] == first.address
    assert not matrix.flags.writeable
    assert matrix[0, 3] == 999 * 3 and np.isnan(matrix[999]).all()
    # A single embedding column is a view too.
    db.create_table(name + "_e", {"key": "id", "columns": {
        "id": {"dtype": "int64"}, "e": {"dtype": "fixed_size_list[float32, 8]"}}})
    db.write(name + "_e", {"id": [1, 2], "e": np.ones((2, 8), dtype=np.float32)})
    embedded = db.read(name + "_e", [2, 3, 1])
    emb = embedded.to_numpy()
    assert emb.shape == (3, 8) and np.isnan(emb[1]).all() and (emb[0] == 1).all()
    values = embedded.to_arrow().column(0).chunk(0).values.buffers()[1]
    assert emb.__array_interface__["data"][0] == values.address


def test_to_numpy_of_integer_columns_with_nulls_is_float(db, name):
    db.create_table(name, pa.schema([("id", pa.string()), ("a", pa.int32()), ("b", pa.int64())]),
                    key="id")
    db.write(name, {"id": ["x"], "a": [1], "b": [2]})
    dense = db.read(name, ["x"]).to_numpy()
    assert dense.dtype == np.int64 and dense.tolist() == [[1, 2]]
    sparse = db.read(name, ["x", "y"]).to_numpy()
    assert sparse.dtype == np.float64 and np.isnan(sparse[1]).all()
    with pytest.raises(TypeError, match="numeric columns"):
        db.create_table(name + "_s", pa.schema([("id", pa.string()), ("s", pa.string())]), key="id")
        db.read(name + "_s", ["x"]).to_numpy()


def test_large_writes_and_reads(db, name, monkeypatch):
    import quiver._http

    monkeypatch.setattr(quiver._http, "WRITE_CHUNK_BYTES", 64 << 10)  # several HTTP requests
    db.create_table(name, pa.schema([("id", pa.int64()), ("x", pa.float64())]), key="id")
    n = 200_000
    ids = np.arange(n, dtype=np.int64)
    assert db.write(name, pa.table({"id": ids, "x": ids * 0.5})) == (n, 0)
    keys = np.random.default_rng(1).integers(0, n + 1000, 100_000)
    result = db.read(name, keys)
    expected = np.where(keys < n, keys * 0.5, np.nan)
    np.testing.assert_array_equal(result.to_numpy()[:, 0], expected)
    assert result.found_count == int((keys < n).sum())


def test_threads_share_one_client(db, name):
    db.create_table(name, pa.schema([("id", pa.int64()), ("x", pa.int64())]), key="id")
    db.write(name, {"id": list(range(100)), "x": list(range(100))})
    errors = []

    def work(seed):
        try:
            for i in range(30):
                keys = [(seed * 7 + i) % 100, 1000]
                assert db.read(name, keys)["x"].to_pylist() == [keys[0], None]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
