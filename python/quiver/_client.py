"""Client: the one API over every backend (embedded engine, HTTP, Arrow Flight, shared memory).

Arguments are normalized here, once, for every backend (schemas to TableSchema JSON, data to Arrow
in the table's types, keys to one Arrow array), so each backend does only transport and every
backend gives the same results and raises the same errors.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, NamedTuple

import pyarrow as pa

from . import _convert, _schema
from ._errors import InvalidRequest, Unsupported
from ._result import ReadResult


class WriteResult(NamedTuple):
    rows_written: int  # inserted or updated
    rows_skipped: int  # older than the stored event time


_UNCHANGED: Any = object()  # alter_table(ttl=...) not given


def _columns(columns: Iterable[str] | str | None) -> list[str]:
    if columns is None:
        return []
    if isinstance(columns, str):
        return [columns]
    return [str(c) for c in columns]


def _cast(cast: str | None, schema: pa.Schema) -> str:
    """The cast mode a write converts under: the one given, else the table's."""
    if cast is None:
        return (schema.metadata or {}).get(_schema.CAST_METADATA, b"safe").decode()
    if cast not in ("safe", "strict"):
        raise InvalidRequest(f"cast must be 'safe' or 'strict', not {cast!r}", "INVALID_ARGUMENT")
    return cast


def _ttl(ttl: Any) -> float | None:
    """A TTL in seconds as a float (None: none given); the server checks its range."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl):
        raise InvalidRequest(f"ttl must be a number of seconds, not {ttl!r}", "INVALID_ARGUMENT")
    return float(ttl)


class Client:
    """A Quiver database: ``quiver.open()`` (embedded) or ``quiver.connect(url)`` (remote)."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    @property
    def backend(self) -> str:
        """"embedded", "http", "flight" or "shm"."""
        return self._backend.name

    def close(self) -> None:
        self._backend.close()

    @property
    def kv(self) -> Any:
        """The key-value store (strings and hashes with TTLs, Redis's semantics) of an embedded
        engine: ``quiver.open().kv.set("k", b"v", ex=60)``. Remote servers serve it over the
        Redis protocol instead (redis-py on quiverd's --resp-port)."""
        kv = getattr(self._backend, "kv", None)
        if kv is None:
            raise Unsupported(f"the {self.backend} client has no key-value API: use a Redis "
                              "client (redis-py) on quiverd's RESP port", "NOT_IMPLEMENTED")
        return kv

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        where = getattr(self._backend, "url", "in-process")
        return f"<quiver.Client {self.backend} {where}>"

    def create_table(self, name: str, schema: pa.Schema | Mapping[str, Any],
                     key: str | list[str] | None = None,
                     event_time: str | None = None, ttl: float | None = None) -> pa.Schema:
        """Creates a table. ``schema``: a pyarrow.Schema (``key`` names the key column, or a
        composite key's columns as a list, unless fields are marked with metadata ``quiver.key``)
        or murr's TableSchema dict. ``ttl``: the
        seconds a written row lives unless its write says otherwise (default: forever). Returns
        the stored schema."""
        return _schema.from_json(
            self._backend.create_table(name, _schema.to_json(schema, key, event_time, _ttl(ttl))))

    def drop_table(self, name: str) -> None:
        self._backend.drop_table(name)

    def alter_table(self, name: str, add: Mapping[str, Any] | None = None,
                    drop: Iterable[str] | str | None = None,
                    rename: Mapping[str, str] | None = None,
                    alter: Mapping[str, Any] | None = None, ttl: Any = _UNCHANGED) -> pa.Schema:
        """Changes a table's schema online, all parts at once (docs/schema.md): ``add`` new
        columns ({"g": {"dtype": "float32"}} or {"g": pa.float32()}; a non-nullable one needs a
        "default"), ``drop`` columns, ``rename`` them ({"old": "new"}), ``alter`` them (widen a
        dtype, make nullable, set a default), set the table's ``ttl`` (seconds; None: rows never
        expire). Reads and writes go on meanwhile. Returns the schema after the change."""
        change = _schema.change_json(add, drop, rename, alter)
        if ttl is not _UNCHANGED:
            change["ttl"] = 0 if ttl is None else _ttl(ttl)
        return _schema.from_json(self._backend.alter_table(name, change))

    def describe(self, name: str) -> dict[str, Any]:
        """The table as the server sees it: ``name``, ``rows``, ``bytes``, ``key``, ``ttl``
        (seconds or None), ``event_time``, ``columns`` (each ``name``, ``dtype``, ``nullable``,
        ``default``), ``schema`` (the TableSchema dict) and ``memory`` (its parts in bytes)."""
        return self._backend.describe(name)

    def list_tables(self) -> list[str]:
        """Table names, sorted."""
        return self._backend.list_tables()

    def schema(self, name: str) -> pa.Schema:
        """The table's schema; the key field carries metadata ``{"quiver.key": "true"}``."""
        return _schema.from_json(self._backend.schema(name))

    def table_schema(self, name: str) -> dict[str, Any]:
        """The table's schema as murr's TableSchema dict."""
        return self._backend.schema(name)

    def write(self, name: str, data: Any, ttl: float | None = None,
              cast: str | None = None) -> WriteResult:
        """Upserts rows: a pyarrow Table or RecordBatch, a pandas or polars DataFrame, a dict of
        columns, or any Arrow stream. The key column and any subset of value columns. ``cast``:
        "safe" converts values to the table's types when nothing is lost, "strict" takes the
        table's types only (default: the table's "cast", safe unless set; docs/schema.md).
        ``ttl``: the seconds the written rows live (default: the table's TTL; rows written
        without either never expire)."""
        schema = self.schema(name)
        table = _convert.conform(_convert.to_table(data, schema), schema, name, _cast(cast, schema))
        return WriteResult(*self._backend.write(name, table, _ttl(ttl), cast))

    def read(self, name: str, keys: Any, columns: Iterable[str] | str | None = None, *,
             with_ttl: bool = False) -> ReadResult:
        """One row per key (a list, NumPy array, Series or Arrow array; a composite key's keys:
        a dict of arrays, a DataFrame or an Arrow table), in order; ``columns``: the value
        columns wanted (default: all). ``with_ttl``: a last column ``_ttl_ms`` holds each row's
        remaining time to live in milliseconds (null: it never expires, or the key is missing)."""
        data, found, found_count = self._backend.read(name, _convert.to_keys(keys),
                                                      _columns(columns), with_ttl)
        return ReadResult.from_batches(data, found, found_count)

    def delete(self, name: str, keys: Any) -> int:
        """Deletes keys; returns how many were present."""
        return self._backend.delete(name, _convert.to_keys(keys))

    def snapshot(self, tables: Iterable[str] | str | None = None) -> list[dict[str, Any]]:
        """Saves the named tables (default: all) to the data directory now, as Arrow IPC files;
        the write-ahead log they no longer need is then removed. One dict per table: ``table``,
        ``written`` (False: unchanged since its last snapshot), ``rows``, ``bytes``, ``lsn``,
        ``seconds``."""
        return self._backend.snapshot(_columns(tables))

    def sync_table(self, name: str, uri: str, poll_seconds: float | None = None) -> dict[str, Any]:
        """Keeps table ``name`` in sync with the Parquet files under ``uri`` (``s3://bucket/prefix/``
        or a directory the server can read): the server loads each file once, in path order, and
        polls for new ones every ``poll_seconds`` (default 60). Returns the source's status (see
        ``sync_status``). HTTP only."""
        return self._source("sync_table", name, uri, poll_seconds)

    def sync_status(self, name: str) -> dict[str, Any]:
        """A table's Parquet source: ``uri``, ``poll_seconds``, ``state``, ``rows_loaded``,
        ``files_loaded``, ``files_refused``, ``last_poll_ms``, ``last_error`` and ``files`` (each
        ``path``, ``bytes``, ``rows``, ``loaded_ms`` and, when refused, ``error``)."""
        return self._source("sync_status", name)

    def unsync_table(self, name: str) -> None:
        """Unbinds a table from its Parquet source (its rows stay)."""
        return self._source("unsync_table", name)

    def _source(self, method: str, *args: Any) -> Any:
        call = getattr(self._backend, method, None)
        if call is None:
            raise Unsupported(f"{method}() asks quiverd to load Parquet files; the {self.backend} "
                              "client cannot (connect over http://)", "NOT_IMPLEMENTED")
        return call(*args)

    def table(self, name: str, columns: Iterable[str] | str | None = None) -> Any:
        """The hot path of the shared-memory backend: a reader of fixed-width ``columns`` (default:
        every value column) that share one element type, e.g. ten float32 features or an
        embedding. ``rows.get(key)`` returns a NumPy row (``rows.width`` values of
        ``rows.dtype``; into ``out=`` when given) or None for a missing key;
        ``rows.read_into(keys, out)`` fills a preallocated ``(len(keys), rows.width)`` matrix
        and returns the found mask. Nulls read as NaN (floats) or 0."""
        rows = getattr(self._backend, "rows", None)
        if rows is None:
            raise Unsupported(f"table() is the shared-memory hot path; the {self.backend} "
                              "client reads with read()", "NOT_IMPLEMENTED")
        return rows(name, _columns(columns))

    def shm_status(self) -> dict[str, Any]:
        """The readers attached to the server's shared-memory socket (shm backend)."""
        status = getattr(self._backend, "status", None)
        if status is None:
            raise Unsupported(f"the {self.backend} client has no shared-memory status",
                              "NOT_IMPLEMENTED")
        return status()


class AsyncClient:
    """The remote clients for asyncio: ``await quiver.aio.connect(url)``; same methods as
    Client, as coroutines."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    @property
    def backend(self) -> str:
        return self._backend.name

    async def close(self) -> None:
        await self._backend.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def create_table(self, name: str, schema: pa.Schema | Mapping[str, Any],
                           key: str | list[str] | None = None, event_time: str | None = None,
                           ttl: float | None = None) -> pa.Schema:
        return _schema.from_json(await self._backend.create_table(
            name, _schema.to_json(schema, key, event_time, _ttl(ttl))))

    async def drop_table(self, name: str) -> None:
        await self._backend.drop_table(name)

    async def alter_table(self, name: str, add: Mapping[str, Any] | None = None,
                          drop: Iterable[str] | str | None = None,
                          rename: Mapping[str, str] | None = None,
                          alter: Mapping[str, Any] | None = None, ttl: Any = _UNCHANGED) -> pa.Schema:
        """As Client.alter_table."""
        change = _schema.change_json(add, drop, rename, alter)
        if ttl is not _UNCHANGED:
            change["ttl"] = 0 if ttl is None else _ttl(ttl)
        return _schema.from_json(await self._backend.alter_table(name, change))

    async def describe(self, name: str) -> dict[str, Any]:
        return await self._backend.describe(name)

    async def list_tables(self) -> list[str]:
        return await self._backend.list_tables()

    async def schema(self, name: str) -> pa.Schema:
        return _schema.from_json(await self._backend.schema(name))

    async def table_schema(self, name: str) -> dict[str, Any]:
        return await self._backend.schema(name)

    async def write(self, name: str, data: Any, ttl: float | None = None,
                    cast: str | None = None) -> WriteResult:
        schema = await self.schema(name)
        table = _convert.conform(_convert.to_table(data, schema), schema, name, _cast(cast, schema))
        return WriteResult(*await self._backend.write(name, table, _ttl(ttl), cast))

    async def read(self, name: str, keys: Any, columns: Iterable[str] | str | None = None, *,
                   with_ttl: bool = False) -> ReadResult:
        data, found, found_count = await self._backend.read(name, _convert.to_keys(keys),
                                                            _columns(columns), with_ttl)
        return ReadResult.from_batches(data, found, found_count)

    async def delete(self, name: str, keys: Any) -> int:
        return await self._backend.delete(name, _convert.to_keys(keys))

    async def snapshot(self, tables: Iterable[str] | str | None = None) -> list[dict[str, Any]]:
        return await self._backend.snapshot(_columns(tables))

    async def sync_table(self, name: str, uri: str,
                         poll_seconds: float | None = None) -> dict[str, Any]:
        """As Client.sync_table."""
        return await self._backend.sync_table(name, uri, poll_seconds)

    async def sync_status(self, name: str) -> dict[str, Any]:
        return await self._backend.sync_status(name)

    async def unsync_table(self, name: str) -> None:
        return await self._backend.unsync_table(name)
