"""Point-in-time reads of a table's change history, for training (docs/offline.md).

A quiverd started with ``--history URI`` writes every change to its tables (upserts, deletes,
drops, each with the time it was made and its event time) to a Parquet dataset under ``URI``.
``point_in_time`` answers, for each (key, timestamp) row of an entity frame, the feature values
for that key as of that timestamp, replaying the changes as the table applies them: a column a
write left out keeps its value, a delete or a drop removes the row; by applied time also the
event-time guard (a write older than the row's event time is skipped) and TTL expiry, which makes
the answer what a read of the table returned then; by event time each write counts from its event
time, late data included.

    import quiver.offline
    train = quiver.offline.point_in_time("s3://bucket/history", "users", entity_df)
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._errors import ColumnNotFound, InvalidRequest, TableNotFound

__all__ = ["point_in_time", "read_history"]

_META = ("_quiver_op", "_quiver_lsn", "_quiver_row", "_quiver_applied_at", "_quiver_event_time",
         "_quiver_expires_at", "_quiver_omitted")
_NEVER = np.iinfo(np.int64).max


def _filesystem(uri: str, filesystem: Any) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if filesystem is not None:
        return filesystem, uri
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise InvalidRequest(f"history URI '{uri}': {e}", "INVALID_ARGUMENT") from None


def _history_files(uri: str, table: str, filesystem: Any) -> tuple[Any, list[str]]:
    import pyarrow.fs as pafs

    fs, root = _filesystem(uri, filesystem)
    base = f"{root.rstrip('/')}/table={table}"
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except (pa.ArrowException, OSError) as e:
        raise InvalidRequest(f"history '{uri}': cannot list table '{table}': {e}",
                             "INVALID_ARGUMENT") from None
    # Files in the order of their names: date, hour, then the log position (the newest last).
    files = sorted(i.path for i in infos if i.type == pafs.FileType.File
                   and i.base_name.endswith(".parquet")
                   and not i.base_name.startswith((".", "_")))
    if not files:
        raise TableNotFound(f"the history at '{uri}' holds no changes of table '{table}'",
                            "NOT_FOUND")
    return fs, files


def read_history(history_uri: str, table: str, *, filter: Any = None,  # noqa: A002
                 columns: Sequence[str] | None = None, filesystem: Any = None) -> pa.Table:
    """Every history row of ``table`` (optionally a pyarrow.compute ``filter`` and a subset of
    ``columns``), unordered: the table's key and value columns, then the ``_quiver_*`` columns
    (docs/offline.md). The schema is the newest file's (its metadata names the key and the
    event-time column)."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    fs, files = _history_files(history_uri, table, filesystem)
    schema = pq.read_schema(files[-1], filesystem=fs)
    try:
        dataset = ds.dataset(files, schema=schema, format="parquet", filesystem=fs)
        return dataset.to_table(columns=None if columns is None else list(columns), filter=filter)
    except (pa.ArrowException, OSError) as e:
        raise InvalidRequest(
            f"the history of table '{table}' at '{history_uri}' cannot be read with its newest "
            f"schema (was the table re-created with other column types?): {e}",
            "INVALID_ARGUMENT") from None


def _micros(values: Any, what: str) -> np.ndarray:
    """Timestamps as int64 microseconds since the epoch (UTC; naive ones are taken as UTC)."""
    array = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    if pa.types.is_date(array.type):
        array = array.cast(pa.timestamp("us"))
    if not pa.types.is_timestamp(array.type):
        raise InvalidRequest(f"{what} must hold timestamps, not {array.type}", "INVALID_ARGUMENT")
    if array.null_count:
        raise InvalidRequest(f"{what} holds nulls", "INVALID_ARGUMENT")
    return _ints(pc.cast(array, pa.timestamp("us", tz=array.type.tz), safe=False))


def _ints(column: Any, null: int = 0) -> np.ndarray:
    """An integer or timestamp column as int64 numbers (timestamps: their stored unit)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_integer(array.type):
        array = array.view(pa.int64())
    if array.null_count:
        array = array.fill_null(null)
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.int64)


def _bools(column: Any) -> np.ndarray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _as_arrow(frame: Any) -> tuple[pa.Table, str]:
    """The entity rows as an Arrow table, and what kind of frame they came as."""
    if isinstance(frame, pa.Table):
        return frame, "arrow"
    if isinstance(frame, pa.RecordBatch):
        return pa.Table.from_batches([frame]), "arrow"
    if isinstance(frame, dict):
        return pa.table(frame), "arrow"
    module = type(frame).__module__.split(".")[0]
    if module == "pandas":
        return pa.Table.from_pandas(frame, preserve_index=False), "pandas"
    if module == "polars":
        return frame.to_arrow(), "polars"
    raise InvalidRequest("entity_df must be a pandas or polars DataFrame, a pyarrow Table or a "
                         f"dict of columns, not {type(frame).__name__}", "INVALID_ARGUMENT")


def _codes(query: pa.Array, history: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of the keys, equal where the keys are equal."""
    both = pa.chunked_array([query, history], type=history.type).combine_chunks()
    encoded = pc.dictionary_encode(both)
    codes = _ints(encoded.indices, -1)
    return codes[:len(query)], codes[len(query):]


def _key_codes(query: list[pa.Array], history: list[pa.Array]) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of keys of one or more columns (a composite key), equal where every column's
    values are."""
    if len(query) == 1:
        return _codes(query[0], history[0])
    pairs = [_codes(q, h) for q, h in zip(query, history)]
    both = np.concatenate([np.stack([q for q, _ in pairs], axis=1),
                           np.stack([h for _, h in pairs], axis=1)])
    _, codes = np.unique(both, axis=0, return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    return codes[:len(query[0])], codes[len(query[0]):]


class _Versions:
    """Each key's successive states in log order: when each began, which history row gives each
    value column (-1: null), and whether the row was gone then."""

    def __init__(self) -> None:
        self.key: list[int] = []
        self.time: list[int] = []
        self.lsn: list[int] = []
        self.dead: list[bool] = []
        self.expires: list[int] = []
        self.source: list[Any] = []  # a history row for every column, or a tuple per column

    def add(self, key: int, time: int, lsn: int, dead: bool, expires: int, source: Any) -> None:
        self.key.append(key)
        self.time.append(time)
        self.lsn.append(lsn)
        self.dead.append(dead)
        self.expires.append(expires)
        self.source.append(source)


def _resolve(h: dict[str, np.ndarray], omitted: dict[int, tuple[int, ...]], n_values: int,
             guarded: bool, by: str) -> _Versions:
    """Each key's states, from its changes replayed as the table applies them (engine/table.h):
    by "applied", in log order, with the event-time guard (`guarded`: the table has an event-time
    column; h["carries"]: whether a write held it) and TTL expiry; by "event_time", in the order
    of the changes' event times (deletes and drops at the time they were made), every write
    taking effect at its event time. `omitted`: for the writes that left out columns asked for,
    their positions."""
    versions = _Versions()
    state: dict[int, list[Any]] = {}  # key -> [event time or None, expires, source]
    op, key, lsn, carries = h["op"], h["key"], h["lsn"], h["carries"]
    applied, event, expires = h["applied"], h["event"], h["expires"]
    when = applied if by == "applied" else np.where(op == 0, event, applied)
    order = range(len(op)) if by == "applied" else np.lexsort((h["row"], lsn, when)).tolist()
    exact = by == "applied"
    for i in order:
        kind = op[i]
        if kind == 2:  # drop: every row goes
            state.clear()
            continue
        k = int(key[i])
        row = state.get(k)
        if exact and row is not None and row[1] <= applied[i]:
            row = None  # expired before this change
        if kind == 1:  # delete
            state.pop(k, None)
            versions.add(k, int(when[i]), int(lsn[i]), True, _NEVER, -1)
            continue
        carries_event = guarded and carries[i]
        if exact and row is not None and carries_event and row[0] is not None \
                and event[i] < row[0]:
            continue  # older than the stored row: skipped
        left_out = omitted.get(i)
        if left_out is None:
            source: Any = i
        else:
            before = row[2] if row is not None else -1
            source = tuple((before if isinstance(before, int) else before[c]) if c in left_out
                           else i for c in range(n_values))
        stored_event = event[i] if carries_event else (row[0] if row is not None else None)
        state[k] = [stored_event, int(expires[i]), source]
        versions.add(k, int(when[i]), int(lsn[i]), False, int(expires[i]), source)
    return versions


def point_in_time(history_uri: str, table: str, entity_df: Any, *,
                  key: str | Sequence[str] | None = None,
                  timestamp: str | None = None, columns: Sequence[str] | None = None,
                  by: str = "event_time", max_age: float | _dt.timedelta | None = None,
                  filesystem: Any = None) -> Any:
    """The feature values of ``table`` as of each row of ``entity_df``, from its change history
    at ``history_uri`` (a quiverd's ``--history``: ``s3://bucket/prefix?...``, ``file:///path``
    or a local path).

    ``entity_df`` (pandas or polars DataFrame, pyarrow Table, or dict of columns) holds a key
    column (``key``, default: the table's key column's name; a composite key's columns, a list)
    and a timestamp column
    (``timestamp``, default ``event_timestamp`` or its only timestamp column; naive times are
    UTC). Returned: the same kind of frame, its rows in their order, with the table's value
    columns (or ``columns``) added: each row's values as the table held them at that time, nulls
    where the key had no row then.

    ``by``: ``"event_time"`` (the default) orders changes by their event time (the table's
    event-time column, or the time a change was made when it has none; deletes and drops at the
    time they were made), as training sets need: a late write counts from its event time, and TTL
    expiry is not applied; ``"applied"`` by the time each change was made on the server, with the
    event-time guard and TTL expiry: exactly what a read of the table returned at that time. ``max_age`` (seconds or a timedelta):
    a value older than this at the entity's time is null (Feast's TTL)."""
    if by not in ("event_time", "applied"):
        raise InvalidRequest(f"by must be 'event_time' or 'applied', not {by!r}",
                             "INVALID_ARGUMENT")
    entities, kind = _as_arrow(entity_df)
    fs, files = _history_files(history_uri, table, filesystem)
    import pyarrow.parquet as pq

    schema = pq.read_schema(files[-1], filesystem=fs)
    metadata = schema.metadata or {}
    key_text = metadata.get(b"quiver.key", b"").decode() or schema.field(0).name
    # A composite key's names are a JSON list.
    key_names = json.loads(key_text) if key_text.startswith("[") else [key_text]
    event_name = metadata.get(b"quiver.event_time", b"").decode() or None
    value_names = [f.name for f in schema if f.name not in key_names and f.name not in _META]
    wanted = list(value_names if columns is None else columns)
    for name in wanted:
        if name not in value_names:
            raise ColumnNotFound(f"table '{table}' has no column '{name}' in its history "
                                 f"(columns: {', '.join(value_names)})", "NOT_FOUND")
    key_columns = [key] if isinstance(key, str) else list(key) if key else key_names
    if len(key_columns) != len(key_names):
        raise InvalidRequest(f"key= names {len(key_columns)} column(s), the table's key has "
                             f"{len(key_names)} ({', '.join(key_names)})", "INVALID_ARGUMENT")
    for key_column in key_columns:
        if key_column not in entities.column_names:
            raise InvalidRequest(f"entity_df has no key column '{key_column}' (columns: "
                                 f"{', '.join(entities.column_names)})", "INVALID_ARGUMENT")
    if timestamp is None:
        stamped = [f.name for f in entities.schema if pa.types.is_timestamp(f.type)]
        timestamp = ("event_timestamp" if "event_timestamp" in entities.column_names
                     else stamped[0] if len(stamped) == 1 else None)
        if timestamp is None:
            raise InvalidRequest("entity_df needs a timestamp column: name it with timestamp= "
                                 f"(columns: {', '.join(entities.column_names)})",
                                 "INVALID_ARGUMENT")
    elif timestamp not in entities.column_names:
        raise InvalidRequest(f"entity_df has no timestamp column '{timestamp}'",
                             "INVALID_ARGUMENT")
    clash = [name for name in wanted if name in entities.column_names]
    if clash:
        raise InvalidRequest(f"entity_df already has column(s) {', '.join(clash)}: pass "
                             "columns= without them", "INVALID_ARGUMENT")
    query_time = _micros(entities.column(timestamp), f"entity_df column '{timestamp}'")
    query_keys = []
    for key_column, key_name in zip(key_columns, key_names):
        key_type = schema.field(key_name).type
        values = entities.column(key_column)
        if values.null_count:
            raise InvalidRequest(f"entity_df column '{key_column}' holds nulls",
                                 "INVALID_ARGUMENT")
        try:
            query_keys.append(values.cast(key_type).combine_chunks())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise InvalidRequest(f"entity_df column '{key_column}' ({values.type}) does not "
                                 f"convert to the table's key type {key_type}: {e}",
                                 "INVALID_ARGUMENT") from None

    # The rows that can matter: the entities' keys (each column's values: a superset for a
    # composite key), and drops.
    row_filter = pc.field("_quiver_op") == "drop"
    key_filter = None
    for key_name, values in zip(key_names, query_keys):
        matches = pc.field(key_name).isin(pc.unique(values))
        key_filter = matches if key_filter is None else key_filter & matches
    row_filter = key_filter | row_filter
    if by == "applied" and len(query_time):
        row_filter &= pc.field("_quiver_applied_at") <= pa.scalar(int(query_time.max()),
                                                                  pa.timestamp("us", tz="UTC"))
    history = read_history(history_uri, table, filter=row_filter,
                           columns=[*key_names, *wanted, *_META], filesystem=filesystem)
    order = np.lexsort((_ints(history.column("_quiver_row")), _ints(history.column("_quiver_lsn"))))
    history = history.take(pa.array(order, type=pa.int64()))
    op_column = history.column("_quiver_op")
    op = np.where(_bools(pc.equal(op_column, "delete")), 1,
                  np.where(_bools(pc.equal(op_column, "drop")), 2, 0)).astype(np.int8)
    query_codes, history_codes = _key_codes(
        query_keys, [history.column(name).combine_chunks() for name in key_names])
    # Which columns asked for each write left out, and whether it held the event-time column.
    position = {name: i for i, name in enumerate(wanted)}
    omitted_column = history.column("_quiver_omitted")
    partial = np.flatnonzero(_bools(pc.is_valid(omitted_column)))
    carries = np.ones(len(history), dtype=bool)
    omitted: dict[int, tuple[int, ...]] = {}
    for i, names in zip(partial.tolist(), omitted_column.take(pa.array(partial)).to_pylist()):
        left = tuple(sorted(position[n] for n in names if n in position))
        if left:
            omitted[i] = left
        carries[i] = event_name not in names
    h = {"op": op, "key": history_codes, "lsn": _ints(history.column("_quiver_lsn")),
         "row": _ints(history.column("_quiver_row")),
         "applied": _ints(history.column("_quiver_applied_at")),
         "event": _ints(history.column("_quiver_event_time")),
         "expires": _ints(history.column("_quiver_expires_at"), _NEVER), "carries": carries}
    versions = _resolve(h, omitted, len(wanted), event_name is not None, by)

    # For each entity row, the key's last state that began at or before its time.
    v_key = np.asarray(versions.key, dtype=np.int64)
    v_time = np.asarray(versions.time, dtype=np.int64)
    v_lsn = np.asarray(versions.lsn, dtype=np.int64)
    times = np.unique(np.concatenate([v_time, query_time]))
    span = len(times) + 1
    v_rank = v_key * span + np.searchsorted(times, v_time)
    q_rank = query_codes * span + np.searchsorted(times, query_time)
    v_order = np.lexsort((v_lsn, v_rank))
    match = np.searchsorted(v_rank[v_order], q_rank, side="right") - 1
    found = match >= 0
    match = v_order[np.maximum(match, 0)] if len(v_order) else np.zeros(len(match), np.int64)
    if len(v_key):
        found &= v_key[match] == query_codes
        found &= ~np.asarray(versions.dead, dtype=bool)[match]
        if by == "applied":
            found &= np.asarray(versions.expires, dtype=np.int64)[match] > query_time
        if max_age is not None:
            seconds = max_age.total_seconds() if isinstance(max_age, _dt.timedelta) else max_age
            found &= query_time - v_time[match] <= int(seconds * 1_000_000)
        # A drop at or before the entity's time removes every older state.
        drops = np.flatnonzero(op == 2)
        if len(drops):
            drop_time = h["applied"][drops]
            drop_order = np.argsort(drop_time, kind="stable")
            latest = np.maximum.accumulate(h["lsn"][drops][drop_order])
            before = np.searchsorted(drop_time[drop_order], query_time, side="right") - 1
            dropped_lsn = np.where(before >= 0, latest[np.maximum(before, 0)], -1)
            found &= v_lsn[match] > dropped_lsn

    # The values: each column's history row per entity row (-1: null; -2: per column).
    v_source = np.fromiter((s if isinstance(s, int) else -2 for s in versions.source),
                           dtype=np.int64, count=len(versions.source))
    source = np.where(found, v_source[match] if len(v_source) else -1, -1)
    per_column = np.flatnonzero(source == -2)
    out = entities
    for c, name in enumerate(wanted):
        rows = source.copy()
        for q in per_column.tolist():
            rows[q] = versions.source[match[q]][c]
        values = history.column(name).take(pa.array(rows, mask=rows < 0))
        out = out.append_column(pa.field(name, history.schema.field(name).type), values)
    if kind == "pandas":
        frame = out.to_pandas()
        frame.index = entity_df.index
        return frame
    if kind == "polars":
        import polars

        return polars.from_arrow(out)
    return out
