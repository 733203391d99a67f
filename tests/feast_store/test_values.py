"""quiver._quiver.feast_values (python/ext/feast_values.cc), which turns a read's Arrow columns
into Feast Values for quiver.feast: every value kind, nulls, edge values and chunked columns,
each compared with the Value Feast's own protobuf classes build; and the errors."""

import math
from datetime import datetime, timezone

import pyarrow as pa
import pytest
from feast.protos.feast.types import Value_pb2
from feast.protos.feast.types.Value_pb2 import Value

import quiver
from quiver import _quiver

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def number(field: str) -> int:
    return Value.DESCRIPTOR.fields_by_name[field].number


def values(table: pa.Table, fields: list[int]) -> list[Value]:
    blob = _quiver.feast_values(table.__arrow_c_stream__(), fields)
    return list(Value_pb2.RepeatedValue.FromString(blob).val)


SCALARS = [
    ("int32_val", pa.int32(), [0, 1, -1, 127, 128, INT32_MIN, INT32_MAX, None]),
    ("int64_val", pa.int64(), [0, 1, -1, 300, 1 << 40, INT64_MIN, INT64_MAX, None]),
    ("float_val", pa.float32(), [0.0, -0.0, 1.5, -2.25, float("inf"), 3.4e38, None]),
    ("double_val", pa.float64(), [0.0, 1e-300, -1.5, float("-inf"), 1.7976931348623157e308,
                                  None]),
    ("bool_val", pa.bool_(), [True, False, None, True]),
    ("string_val", pa.string(), ["", "a", "é✓", "x" * 300, None]),
    ("bytes_val", pa.binary(), [b"", b"\x00\xff", b"y" * 200, None]),
]


@pytest.mark.parametrize("field, arrow_type, items", SCALARS, ids=[s[0] for s in SCALARS])
def test_scalars_match_feast_values(field, arrow_type, items):
    got = values(pa.table({"c": pa.array(items, arrow_type)}), [number(field)])
    want = [Value() if item is None else Value(**{field: item}) for item in items]
    assert [v.SerializeToString() for v in got] == [v.SerializeToString() for v in want]
    assert [v.WhichOneof("val") for v in got] == [None if i is None else field for i in items]


def test_unix_timestamps_are_whole_seconds_floored():
    moments = [datetime(2026, 12, 1, 12, 0, 0, 999000, tzinfo=timezone.utc),
               datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=timezone.utc),
               datetime(1970, 1, 1, tzinfo=timezone.utc), None]
    for unit in ("s", "ms", "us", "ns"):
        column = pa.array(moments, pa.timestamp(unit, tz="UTC"))
        got = values(pa.table({"t": column}), [number("unix_timestamp_val")])
        # Floored, as Feast's seconds: 1969-12-31 23:59:59.5 is -1, not 0.
        seconds = [math.floor(moment.timestamp()) for moment in moments[:3]]
        assert seconds[1] == -1
        assert [v.unix_timestamp_val for v in got[:3]] == seconds, unit
        assert got[3].WhichOneof("val") is None


LISTS = [
    ("int32_list_val", Value_pb2.Int32List, pa.int32(), [[1, -1, INT32_MIN], [], None, [0]]),
    ("int64_list_val", Value_pb2.Int64List, pa.int64(), [[INT64_MAX, -5], [], None]),
    ("float_list_val", Value_pb2.FloatList, pa.float32(), [[0.5, -1.25], [], None, [0.0]]),
    ("double_list_val", Value_pb2.DoubleList, pa.float64(), [[1e100, -0.0], None, []]),
    ("unix_timestamp_list_val", Value_pb2.Int64List, pa.int64(), [[0, 1764590400], []]),
]


@pytest.mark.parametrize("field, message, element, items", LISTS, ids=[s[0] for s in LISTS])
def test_lists_match_feast_values(field, message, element, items):
    want = [Value() if item is None else Value(**{field: message(val=item)}) for item in items]
    for arrow_type in (pa.list_(element), pa.large_list(element)):
        got = values(pa.table({"l": pa.array(items, arrow_type)}), [number(field)])
        assert [v.SerializeToString() for v in got] == [v.SerializeToString() for v in want]
        # An empty list is a set (empty) list, not a missing value.
        assert [v.WhichOneof("val") for v in got] == [None if i is None else field
                                                      for i in items]


def test_fixed_size_lists_are_embeddings():
    rows = [[0.25, -1.0, 3.0], None, [0.0, 0.0, 0.0]]
    column = pa.array(rows, pa.list_(pa.float32(), 3))
    got = values(pa.table({"e": column}), [number("float_list_val")])
    assert list(got[0].float_list_val.val) == [0.25, -1.0, 3.0]
    assert got[1].WhichOneof("val") is None
    assert list(got[2].float_list_val.val) == [0.0, 0.0, 0.0]


def test_serialized_values_pass_through():
    stored = [Value(string_list_val=Value_pb2.StringList(val=["a", "b"])),
              Value(bool_list_val=Value_pb2.BoolList(val=[True, False])), None, Value()]
    column = pa.array([None if v is None else v.SerializeToString() for v in stored], pa.binary())
    got = values(pa.table({"s": column}), [0])
    assert got[0] == stored[0] and got[1] == stored[1]
    assert got[2].WhichOneof("val") is None and got[3].WhichOneof("val") is None


def test_columns_follow_each_other_and_chunks_and_slices_keep_order():
    first = pa.chunked_array([pa.array([1, 2], pa.int64()), pa.array([3], pa.int64())])
    second = pa.array([0.5, None, 2.5, 9.0], pa.float64()).slice(0, 3)
    got = values(pa.table({"a": first, "b": second}), [number("int64_val"), number("double_val")])
    assert [v.int64_val for v in got[:3]] == [1, 2, 3]
    assert [v.WhichOneof("val") for v in got[3:]] == ["double_val", None, "double_val"]
    assert got[5].double_val == 2.5
    sliced = pa.array([[1.0], [2.0, 3.0], [4.0]], pa.list_(pa.float64())).slice(1, 2)
    got = values(pa.table({"l": sliced}), [number("double_list_val")])
    assert [list(v.double_list_val.val) for v in got] == [[2.0, 3.0], [4.0]]


def test_wider_columns_convert_to_the_features_kind():
    # A column widened by a schema change (float32 -> float64) still serves a Float32 feature.
    got = values(pa.table({"c": pa.array([1.5, None], pa.float64())}), [number("float_val")])
    assert got[0].float_val == 1.5 and got[1].WhichOneof("val") is None


def test_empty_table_gives_no_values():
    assert values(pa.table({"c": pa.array([], pa.int64())}), [number("int64_val")]) == []


@pytest.mark.parametrize("column, field, names", [
    (pa.array(["x"]), "int64_val", "'c': a string column"),
    (pa.array([1.5]), "int64_val", "'c': a double column"),
    (pa.array([1], pa.int64()), "string_val", "'c': a int64 column"),
    (pa.array([[1.0]], pa.list_(pa.float64())), "double_val", "'c': a list<item: double>"),
    (pa.array([1.0]), "float_list_val", "'c': a double column cannot give a Feast list"),
    (pa.array([1], pa.int64()), "map_val", "'c': Feast Value field 20 is not one Quiver encodes"),
])
def test_a_column_that_cannot_give_the_field_is_an_error(column, field, names):
    with pytest.raises(_quiver.EngineError, match="column " + names.replace("(", r"\(")):
        values(pa.table({"c": column}), [number(field)])


def test_a_null_element_inside_a_list_is_an_error_not_a_zero():
    column = pa.array([[1.0, None]], pa.list_(pa.float64()))
    with pytest.raises(_quiver.EngineError, match="row 0 holds a null element"):
        values(pa.table({"l": column}), [number("double_list_val")])


def test_fields_must_match_the_columns():
    with pytest.raises(_quiver.EngineError, match="2 columns, 1 fields"):
        values(pa.table({"a": [1], "b": [2]}), [number("int64_val")])
    with pytest.raises(TypeError, match="arrow_array_stream"):
        _quiver.feast_values(object(), [4])


def test_the_embedded_read_gives_what_the_generic_path_gives(tmp_path):
    """Engine.read_feast (the embedded store's read) against Client.read + feast_values."""
    db = quiver.open(str(tmp_path / "data"))
    stamp = pa.timestamp("us", tz="UTC")
    db.create_table("t", pa.schema([
        ("k", pa.int64()), ("f", pa.float32()), ("s", pa.string()),
        ("l", pa.list_(pa.int64())), pa.field("event_ts", stamp, nullable=False)]),
        key="k", event_time="event_ts")
    db.write("t", pa.table({"k": [1, 2], "f": [1.5, None], "s": ["a", "b"], "l": [[1, -2], []],
                            "event_ts": pa.array([1_500_000, -1], stamp)}))
    columns = ["l", "f", "s"]
    fields = [number("int64_list_val"), number("float_val"), number("string_val")]
    keys = pa.array([2, 3, 1], pa.int64())
    got, found, micros = db._backend.read_feast("t", keys, columns, fields, "event_ts")
    data = db.read("t", keys, columns).to_arrow()
    assert got == _quiver.feast_values(data.__arrow_c_stream__(), fields)
    assert list(found) == [1, 0, 1]
    assert micros == [-1, 0, 1_500_000]
    with pytest.raises(quiver.QuiverError, match="column 'f' is float, not a timestamp"):
        db._backend.read_feast("t", keys, columns, fields, "f")
    with pytest.raises(quiver.QuiverError, match="3 columns, 2 fields"):
        db._backend.read_feast("t", keys, columns, fields[:2], "event_ts")
    with pytest.raises(quiver.QuiverError, match="has no column 'nope'"):
        db._backend.read_feast("t", keys, ["nope"], fields[:1], "event_ts")
    db.close()
