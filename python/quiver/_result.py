"""ReadResult: the answer of ``read()``, the same object from every backend."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa


class ReadResult:
    """One row per requested key, in request order; a missing key's row is all null.

    The data stays in the Arrow buffers the engine (or the wire) produced: ``to_arrow()`` returns
    them, ``to_pandas()`` / ``to_polars()`` convert as those libraries do (without copies for
    numeric columns without nulls), ``to_numpy()`` views numeric columns as one matrix. Any Arrow
    consumer also takes the object itself (``__arrow_c_stream__``).
    """

    __slots__ = ("_batch", "_table", "_found", "_found_count")

    def __init__(self, data: pa.RecordBatch | pa.Table, found: pa.BooleanArray,
                 found_count: int) -> None:
        # A single batch is kept as it is (its columns are plain arrays, cheaper to reach than a
        # Table's); the Table is made when asked for.
        self._batch = data if isinstance(data, pa.RecordBatch) else None
        self._table = data if isinstance(data, pa.Table) else None
        self._found = found
        self._found_count = found_count

    @classmethod
    def from_batches(cls, data: pa.RecordBatch | pa.Table, found: pa.Array | pa.ChunkedArray,
                     found_count: int | None = None) -> "ReadResult":
        if isinstance(data, pa.Table) and data.num_rows:
            batches = data.to_batches()  # no copy
            if len(batches) == 1:
                data = batches[0]
        if isinstance(found, pa.ChunkedArray):
            found = found.combine_chunks()
        if found_count is None:
            found_count = int(found.true_count)
        return cls(data, found, found_count)

    @property
    def _data(self) -> pa.RecordBatch | pa.Table:
        return self._batch if self._batch is not None else self._table

    @property
    def found(self) -> np.ndarray:
        """Whether each requested key was present (a NumPy bool array)."""
        return self._found.to_numpy(zero_copy_only=False)

    @property
    def found_count(self) -> int:
        return self._found_count

    @property
    def num_rows(self) -> int:
        return self._data.num_rows

    @property
    def column_names(self) -> list[str]:
        return self._data.schema.names

    @property
    def schema(self) -> pa.Schema:
        return self._data.schema

    def __len__(self) -> int:
        return self._data.num_rows

    def __getitem__(self, column: str) -> pa.ChunkedArray:
        return self.to_arrow().column(column)

    def __repr__(self) -> str:
        return (f"ReadResult({self.num_rows} rows, {self._found_count} found, "
                f"columns={self.column_names})")

    def to_arrow(self) -> pa.Table:
        if self._table is None:
            self._table = pa.Table.from_batches([self._batch])
        return self._table

    def to_pandas(self, **kwargs: Any) -> Any:
        return self.to_arrow().to_pandas(**kwargs)

    def to_polars(self) -> Any:
        import polars as pl

        return pl.from_arrow(self.to_arrow())

    def to_numpy(self, dtype: Any = None) -> np.ndarray:
        """A 2-D matrix, one row per key: the numeric columns side by side, or the rows of a single
        embedding column. Missing keys and nulls read as NaN (integer columns with nulls become
        float64). Without a copy (a read-only view) when the columns share one buffer at a
        constant stride and one dtype, as the engine lays them out; otherwise a copy."""
        data = self._data
        columns = data.columns if self._batch is not None else [_one_chunk(c) for c in data.columns]
        if len(columns) == 1 and pa.types.is_fixed_size_list(columns[0].type):
            return _embedding_matrix(columns[0], dtype)
        for array, name in zip(columns, data.schema.names):
            if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)
                    or pa.types.is_boolean(array.type)):
                raise TypeError(f"to_numpy() needs numeric columns; '{name}' is {array.type} "
                                "(use to_arrow() or to_pandas())")
        view = _matrix_view(columns)
        if view is not None and (dtype is None or np.dtype(dtype) == view.dtype):
            return view
        vectors = [_vector(a) for a in columns]
        if not vectors:
            return np.empty((self.num_rows, 0), dtype=dtype or np.float64)
        out = np.empty((self.num_rows, len(vectors)),
                       dtype=dtype or np.result_type(*[v.dtype for v in vectors]))
        for i, v in enumerate(vectors):
            out[:, i] = v
        return out

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self.to_arrow().__arrow_c_stream__(requested_schema)


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _nulls_are_nan(array: pa.Array, values: np.ndarray) -> bool:
    """Whether every null of a float array already holds NaN (the engine writes NaN there)."""
    if array.null_count == 0:
        return True
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    return bool(np.isnan(values[~valid]).all())


def _vector(array: pa.Array) -> np.ndarray:
    """One column as a NumPy vector, nulls as NaN."""
    if pa.types.is_floating(array.type):
        values = array.to_numpy(zero_copy_only=False)
        if array.null_count and not _nulls_are_nan(array, values):
            values = array.fill_null(float("nan")).to_numpy(zero_copy_only=False)
        return values
    if array.null_count:
        return array.cast(pa.float64()).fill_null(float("nan")).to_numpy(zero_copy_only=False)
    return array.to_numpy(zero_copy_only=False)


def _matrix_view(columns: list[pa.Array]) -> np.ndarray | None:
    """A (rows, columns) view over the columns' value buffers when they are one float or integer
    type without offsets, hold NaN or no null, and lie at a constant stride in one allocation:
    slices of one parent buffer (an IPC message body), or less than 64 bytes apart (the engine's
    block, which aligns each column to 64 bytes)."""
    if not columns:
        return None
    type_ = columns[0].type
    if not (pa.types.is_floating(type_) or pa.types.is_integer(type_)):
        return None
    rows = len(columns[0])
    dtype = np.dtype(type_.to_pandas_dtype())
    width = dtype.itemsize
    buffers = []
    for array in columns:
        if not array.type.equals(type_) or array.offset != 0 or len(array) != rows:
            return None
        if array.null_count and not pa.types.is_floating(type_):
            return None
        buffers.append(array.buffers()[1])
    if rows == 0:
        return None
    addresses = [b.address for b in buffers]
    stride = addresses[1] - addresses[0] if len(addresses) > 1 else rows * width
    if stride < rows * width or any(b - a != stride for a, b in zip(addresses, addresses[1:])):
        return None
    parents = {(p.address, p.size) if (p := b.parent) is not None else None for b in buffers}
    if len(parents) == 1 and None not in parents:
        start, size = parents.pop()
        if addresses[0] < start or addresses[-1] + rows * width > start + size:
            return None
    elif stride - rows * width >= 64:
        return None
    span = stride * (len(columns) - 1) + rows * width
    buffer = pa.foreign_buffer(addresses[0], span, base=columns)
    matrix = np.ndarray(shape=(rows, len(columns)), dtype=dtype, buffer=buffer,
                        strides=(width, stride))
    for i, array in enumerate(columns):
        if array.null_count and not _nulls_are_nan(array, matrix[:, i]):
            return None
    return matrix


def _embedding_matrix(array: pa.FixedSizeListArray, dtype: Any) -> np.ndarray:
    """(rows, dim) from one fixed-size-list column: a view of its values when they are float and
    nulls hold NaN (the engine's layout), otherwise a copy."""
    dim = array.type.list_size
    values = array.values
    if array.offset:
        values = values.slice(array.offset * dim, len(array) * dim)
    if values.null_count == 0 and (pa.types.is_floating(values.type)
                                   or (array.null_count == 0 and pa.types.is_integer(values.type))):
        flat = values.to_numpy(zero_copy_only=True)
        matrix = flat.reshape(len(array), dim)
        if array.null_count and not _nulls_are_nan(array, matrix[:, 0]):
            matrix = matrix.copy()
            matrix[~array.is_valid().to_numpy(zero_copy_only=False)] = np.nan
    else:  # integers with nulls, booleans, or nulls inside lists: copied, nulls as NaN
        matrix = np.array([[np.nan] * dim if v is None else v for v in array.to_pylist()],
                          dtype=np.float64).reshape(len(array), dim)
    return matrix if dtype is None else matrix.astype(dtype, copy=False)
