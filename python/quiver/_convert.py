"""Conversions of what users pass in (DataFrames, dicts, lists, NumPy arrays) to Arrow data that
fits a table, done the same way for every backend, so results and errors are identical."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from . import _quiver
from ._errors import ColumnNotFound, InvalidRequest, SchemaError
from ._schema import dtype_name

_WRITE_INPUTS = "a pyarrow Table or RecordBatch, a pandas or polars DataFrame, or a dict of columns"


def _module_of(obj: Any) -> str:
    return type(obj).__module__.split(".", 1)[0]


def _column(values: Any, target: pa.DataType | None) -> pa.Array | pa.ChunkedArray:
    """One column of a dict, built straight into the target type where there is one."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if isinstance(values, np.ndarray) and values.ndim == 2:
        # A matrix: one embedding (fixed-size list) per row.
        flat = pa.array(np.ascontiguousarray(values).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
    if _module_of(values) == "polars":
        return values.to_arrow()
    # Inferred first, then cast to the target in conform() with safe=True, which refuses what
    # loses information (5.5 into int64, 2**53 + 1 into float64, microseconds into timestamp[ms]).
    # Building straight into the target instead truncates silently: pa.array([5.5], pa.int64())
    # is [5].
    errors = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError)
    try:
        return pa.array(values, from_pandas=True)
    except errors as inferred_error:
        # Inference fails where the target alone can say (an integer past int64 for uint64);
        # with no float among the values, building into the target truncates nothing.
        if target is None or any(isinstance(v, float) for v in values):
            wanted = dtype_name(target) if target is not None else "an Arrow type"
            raise SchemaError(f"cannot convert the values to {wanted}: {inferred_error}",
                              "INVALID_ARGUMENT") from None
        try:
            return pa.array(values, type=target, from_pandas=True)
        except errors as e:
            raise SchemaError(f"cannot convert the values to {dtype_name(target)}: {e}",
                              "INVALID_ARGUMENT") from None


def to_table(data: Any, schema: pa.Schema | None = None) -> pa.Table:
    """A pyarrow Table from any accepted write input. ``schema``: the table's, to build dict
    columns in the right types directly."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, Mapping):
        names = list(data.keys())
        columns = []
        for name in names:
            target = (schema.field(name).type
                      if schema is not None and name in schema.names else None)
            try:
                columns.append(_column(data[name], target))
            except SchemaError as e:
                raise SchemaError(f"column '{name}': {e.message}", e.code) from None
        lengths = {len(c) for c in columns}
        if len(lengths) > 1:
            raise InvalidRequest(f"columns of unequal length: {sorted(lengths)}", "INVALID_ARGUMENT")
        return pa.Table.from_arrays(columns, names=[str(n) for n in names])
    module = _module_of(data)
    if module == "pandas" and type(data).__name__ == "DataFrame":
        return pa.Table.from_pandas(data, preserve_index=False)
    if module == "polars" and type(data).__name__ == "DataFrame":
        return data.to_arrow()
    if hasattr(data, "__arrow_c_stream__"):
        return pa.table(data)
    raise InvalidRequest(f"write() takes {_WRITE_INPUTS}; got {type(data).__name__}",
                         "INVALID_ARGUMENT")


class CArray:
    """Holds exported (schema, array) capsules until pyarrow imports them."""

    __slots__ = ("capsules",)

    def __init__(self, capsules: tuple[Any, Any]) -> None:
        self.capsules = capsules

    def __arrow_c_array__(self, requested_schema: Any = None) -> tuple[Any, Any]:
        return self.capsules


def conform(data: pa.Table, schema: pa.Schema, table_name: str, cast: str = "safe") -> pa.Table:
    """``data`` with every column converted to the table's type for it by the server's own rules
    (the engine's, through the extension: docs/schema.md, "Casts on write"), so that it travels
    in the table's types; unknown columns and lossy values raise errors naming them."""
    columns, fields = [], []
    for name, column in zip(data.column_names, data.columns):
        index = schema.get_field_index(name)
        if index < 0:
            raise ColumnNotFound(f"table '{table_name}' has no column '{name}'", "NOT_FOUND")
        target = schema.field(index)
        if not column.type.equals(target.type):
            array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
            if pa.types.is_dictionary(array.type):
                array = array.dictionary_decode()  # categories: their values
            try:
                converted = _quiver.cast_column(*array.__arrow_c_array__(),
                                                target.type.__arrow_c_schema__(), cast,
                                                f"table '{table_name}' column '{name}'")
            except _quiver.EngineError as e:
                raise SchemaError(e.args[1], e.args[0]) from None
            column = pa.record_batch(CArray(converted)).column(0)
        columns.append(column)
        fields.append(pa.field(name, target.type))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def to_keys(keys: Any) -> pa.Array:
    """Keys as one Arrow array: from a list or tuple, a NumPy array, a pandas or polars Series,
    or an Arrow array. A composite key's keys (one array per key column) come as a dict of
    column name -> values, a pandas or polars DataFrame, or an Arrow table, record batch or
    struct array; they become a struct array with one field per key column."""
    if isinstance(keys, pa.ChunkedArray):
        return keys.combine_chunks()
    if isinstance(keys, pa.Array):
        return keys
    if isinstance(keys, dict):
        if not keys:
            raise InvalidRequest("keys: the dict names no key column", "INVALID_ARGUMENT")
        parts = [to_keys(values) for values in keys.values()]
        try:
            return pa.StructArray.from_arrays(parts, names=[str(name) for name in keys])
        except (pa.ArrowInvalid, ValueError) as e:
            raise InvalidRequest(f"keys: {e}", "INVALID_ARGUMENT") from None
    if isinstance(keys, pa.RecordBatch):
        return keys.to_struct_array()
    if isinstance(keys, pa.Table):
        return to_keys(keys.combine_chunks().to_batches()[0] if keys.num_rows else
                       pa.RecordBatch.from_pylist([], schema=keys.schema))
    if _module_of(keys) in ("pandas", "polars") and hasattr(keys, "columns"):
        table = pa.Table.from_pandas(keys, preserve_index=False) \
            if _module_of(keys) == "pandas" else keys.to_arrow()
        return to_keys(table)
    if isinstance(keys, (str, bytes)) or not hasattr(keys, "__len__"):
        raise InvalidRequest(f"keys must be a list, a NumPy array or an Arrow array, not "
                             f"{type(keys).__name__}", "INVALID_ARGUMENT")
    if _module_of(keys) == "polars":
        return to_keys(keys.to_arrow())
    try:
        array = pa.array(keys) if len(keys) else pa.array([], pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise InvalidRequest(f"keys: {e}", "INVALID_ARGUMENT") from None
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array


def keys_batch(keys: pa.Array) -> pa.RecordBatch:
    """The keys as a record batch: column "key", or a composite key's columns (a struct array's
    fields)."""
    if pa.types.is_struct(keys.type):
        return pa.RecordBatch.from_struct_array(keys)
    return pa.record_batch([keys], names=["key"])


def keys_json(keys: pa.Array) -> Any:
    """The keys as the JSON APIs take them: a list, or a composite key's object of lists."""
    if pa.types.is_struct(keys.type):
        return {keys.type.field(i).name: keys.field(i).to_pylist()
                for i in range(keys.type.num_fields)}
    return keys.to_pylist()
