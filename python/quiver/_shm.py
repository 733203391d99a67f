"""The shared-memory backend: tables of a quiverd on this host, mapped read-only into this
process (docs/shm.md). Reads cross no socket; writes and DDL go to quiverd's other front ends."""

from __future__ import annotations

import json
import os
import threading
from typing import Any, NoReturn

import pyarrow as pa

from . import _quiver
from ._embedded import _CArray
from ._errors import ConnectionError, InvalidRequest, Unsupported, error_from_code


def _error(code: str, message: str) -> Exception:
    if code == "IO_ERROR":
        return ConnectionError(message, code)
    return error_from_code(code, message)


def _raise(e: _quiver.EngineError) -> NoReturn:
    raise _error(*e.args) from None


_quiver.set_error_factory(_error)  # what the hot path (ShmRows) raises


def socket_path(url: str) -> str:
    """The socket of ``shm:///path/quiver.sock`` or of ``shm:///path/to/data-dir``."""
    path = url[len("shm://"):]
    if not path:
        raise ValueError("shm:// needs a path: shm:///path/to/quiver.sock or the data directory")
    return os.path.join(path, "quiver.sock") if os.path.isdir(path) else path


class ShmBackend:
    name = "shm"

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self._client = _quiver.ShmClient(socket_path(url))
        except _quiver.EngineError as e:
            _raise(e)
        self._tables: dict[str, Any] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._tables.clear()

    def table(self, name: str, *, fresh: bool = False) -> Any:
        """The attached table (cached); ``fresh``: attach again (after a drop and re-create)."""
        with self._lock:
            table = None if fresh else self._tables.get(name)
            if table is None:
                try:
                    table = self._client.attach(name)
                except _quiver.EngineError as e:
                    self._tables.pop(name, None)
                    _raise(e)
                self._tables[name] = table
            return table

    def _on_table(self, name: str, call: Any) -> Any:
        """``call(table)``; a table dropped (and maybe created again) since it was attached is
        attached once more, so name-based calls follow the current table."""
        try:
            return call(self.table(name))
        except _quiver.EngineError as e:
            if e.args[0] != "NOT_FOUND" or "was dropped" not in e.args[1]:
                _raise(e)
        try:
            return call(self.table(name, fresh=True))
        except _quiver.EngineError as e:
            _raise(e)

    def _read_only(self, what: str) -> NoReturn:
        raise Unsupported(f"{what}: the shared-memory backend ({self.url}) is read-only; write "
                          "through quiverd's HTTP, Flight or RESP front ends (or the embedded "
                          "engine that publishes the tables)", "NOT_IMPLEMENTED")

    def create_table(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        self._read_only(f"cannot create table {name!r}")

    def drop_table(self, name: str) -> None:
        self._read_only(f"cannot drop table {name!r}")

    def alter_table(self, name: str, change: dict[str, Any]) -> dict[str, Any]:
        self._read_only(f"cannot change table {name!r}")

    def describe(self, name: str) -> dict[str, Any]:
        raise Unsupported(f"cannot describe table {name!r} over shared memory ({self.url}): ask "
                          "quiverd over HTTP or Flight", "NOT_IMPLEMENTED")

    def write(self, name: str, data: pa.Table, ttl: float | None = None,
              cast: str | None = None) -> tuple[int, int]:
        self._read_only(f"cannot write to table {name!r}")

    def delete(self, name: str, keys: pa.Array) -> int:
        self._read_only(f"cannot delete from table {name!r}")

    def snapshot(self, tables: list[str]) -> list[dict[str, Any]]:
        self._read_only("cannot snapshot")

    def list_tables(self) -> list[str]:
        try:
            return list(self._client.list_tables())
        except _quiver.EngineError as e:
            _raise(e)

    def schema(self, name: str) -> dict[str, Any]:
        return json.loads(self._on_table(name, lambda table: table.table_schema()))

    def read(self, name: str, keys: pa.Array, columns: list[str],
             with_ttl: bool = False) -> tuple[pa.RecordBatch, pa.Array, int]:
        if with_ttl:
            raise InvalidRequest("with_ttl is served over HTTP, Flight and in-process, not over "
                                 "shared memory", "INVALID_ARGUMENT")
        batch, found, found_count = self._on_table(
            name, lambda table: table.read(*keys.__arrow_c_array__(), columns))
        return pa.record_batch(_CArray(batch)), pa.record_batch(_CArray(found)).column(0), found_count

    def rows(self, name: str, columns: list[str]) -> Any:
        try:
            return _quiver.ShmRows(self.table(name), columns)
        except _quiver.EngineError as e:
            _raise(e)

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self._client.status())
        except _quiver.EngineError as e:
            _raise(e)

