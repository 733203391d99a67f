"""The embedded backend: the engine in this process (quiver._quiver), no server."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from . import _quiver
from ._convert import CArray as _CArray
from ._errors import error_from_code
from ._kv import KeyValue


class EmbeddedBackend:
    name = "embedded"

    def __init__(self, data_dir: str | None = None, fsync: str = "everysec",
                 snapshot_wal_bytes: int = 256 << 20, snapshot_interval: int = 3600,
                 shm_socket: str | None = None, history: str | None = None,
                 history_interval: float = 60) -> None:
        self._engine = self._call(_quiver.Engine, data_dir, fsync, snapshot_wal_bytes,
                                  snapshot_interval, shm_socket, history, history_interval)
        self.kv = KeyValue(self._engine)

    def close(self) -> None:
        self._engine.close()

    @staticmethod
    def _call(method: Any, *args: Any, schema_op: bool = False) -> Any:
        """An engine method, its EngineError raised as the matching QuiverError."""
        try:
            return method(*args)
        except _quiver.EngineError as e:
            code, message = e.args
            raise error_from_code(code, message, schema_op=schema_op) from None

    def create_table(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        return json.loads(self._call(self._engine.create_table, name, json.dumps(schema),
                                     schema_op=True))

    def drop_table(self, name: str) -> None:
        self._call(self._engine.drop_table, name)

    def alter_table(self, name: str, change: dict[str, Any]) -> dict[str, Any]:
        return json.loads(self._call(self._engine.alter_table, name, json.dumps(change),
                                     schema_op=True))

    def describe(self, name: str) -> dict[str, Any]:
        return json.loads(self._call(self._engine.describe, name))

    def list_tables(self) -> list[str]:
        return list(self._call(self._engine.list_tables))

    def schema(self, name: str) -> dict[str, Any]:
        return json.loads(self._call(self._engine.schema, name))

    def write(self, name: str, data: pa.Table, ttl: float | None = None,
              cast: str | None = None) -> tuple[int, int]:
        return self._call(self._engine.write, name, data.__arrow_c_stream__(), ttl, cast)

    def read(self, name: str, keys: pa.Array, columns: list[str],
             with_ttl: bool = False) -> tuple[pa.RecordBatch, pa.Array, int]:
        batch, found, found_count = self._call(self._engine.read, name,
                                               *keys.__arrow_c_array__(), columns, with_ttl)
        return pa.record_batch(_CArray(batch)), pa.record_batch(_CArray(found)).column(0), found_count

    def read_feast(self, name: str, keys: pa.Array, columns: list[str], fields: list[int],
                   event_column: str) -> tuple[bytes, bytes, list[int]]:
        """quiver.feast's read: Feast Values with no Arrow object in between (Engine.read_feast)."""
        return self._call(self._engine.read_feast, name, *keys.__arrow_c_array__(), columns,
                          fields, event_column)

    def delete(self, name: str, keys: pa.Array) -> int:
        return self._call(self._engine.delete, name, *keys.__arrow_c_array__())

    def snapshot(self, tables: list[str]) -> list[dict[str, Any]]:
        fields = ("table", "written", "rows", "bytes", "lsn", "seconds")
        return [dict(zip(fields, entry)) for entry in self._call(self._engine.snapshot, tables)]

    def stats(self, name: str) -> dict[str, int]:
        return dict(self._call(self._engine.stats, name))
