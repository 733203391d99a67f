"""Conversions of what users pass in (DataFrames, dicts, lists, NumPy arrays) to Arrow data that
fits a table, done the same way for every backend, so results and errors are identical."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pyarrow as pa

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
    try:
        return pa.array(values, type=target, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        return pa.array(values, from_pandas=True)  # the cast in conform() names the problem


def to_table(data: Any, schema: pa.Schema | None = None) -> pa.Table:
    """A pyarrow Table from any accepted write input. ``schema``: the table's, to build dict
    columns in the right types directly."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, Mapping):
        names = list(data.keys())
        columns = [_column(data[name], schema.field(name).type
                           if schema is not None and name in schema.names else None)
                   for name in names]
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


def conform(data: pa.Table, schema: pa.Schema, table_name: str) -> pa.Table:
    """``data`` with every column cast to the table's type for it; unknown columns and unsafe
    conversions raise SchemaError naming the column."""
    columns, fields = [], []
    for name, column in zip(data.column_names, data.columns):
        index = schema.get_field_index(name)
        if index < 0:
            raise ColumnNotFound(f"table '{table_name}' has no column '{name}'", "NOT_FOUND")
        target = schema.field(index)
        if not column.type.equals(target.type):
            try:
                column = column.cast(target.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
                raise SchemaError(
                    f"column '{name}': cannot convert {column.type} to "
                    f"{dtype_name(target.type)}: {e}", "INVALID_ARGUMENT") from None
        columns.append(column)
        fields.append(pa.field(name, target.type))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def to_keys(keys: Any) -> pa.Array:
    """Keys as one Arrow array: from a list or tuple, a NumPy array, a pandas or polars Series,
    or an Arrow array."""
    if isinstance(keys, pa.ChunkedArray):
        return keys.combine_chunks()
    if isinstance(keys, pa.Array):
        return keys
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
