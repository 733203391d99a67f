"""Quiver: an Arrow-native feature cache.

    import quiver
    db = quiver.open()                              # the engine in this process
    db = quiver.connect("http://127.0.0.1:8080")    # a quiverd over HTTP
    db = quiver.connect("grpc://127.0.0.1:8081")    # a quiverd over Arrow Flight
    db = quiver.connect("shm:///path/to/quiver-data")  # its tables mapped here (read-only)

Every backend has the same methods and gives the same results (docs/python.md).
"""

from __future__ import annotations

import os

import pyarrow  # noqa: F401 - loads the Arrow C++ libraries the extension links

from ._client import AsyncClient, Client, WriteResult
from ._errors import (ColumnNotFound, ConnectionError, InvalidRequest, LimitExceeded, OutOfMemory,
                      QuiverError, ReadOnly, SchemaError, ServerError, TableExists,
                      TableNotFound, Unsupported)
from ._result import ReadResult

__version__ = "0.1.0"

__all__ = [
    "open", "connect", "Client", "AsyncClient", "ReadResult", "WriteResult", "QuiverError",
    "TableNotFound", "TableExists", "InvalidRequest", "SchemaError", "ColumnNotFound",
    "LimitExceeded", "OutOfMemory", "ReadOnly", "Unsupported", "ServerError", "ConnectionError",
]


def open(data_dir: str | os.PathLike[str] | None = None, *,  # noqa: A001 - the API's name
         fsync: str = "everysec", snapshot_wal_bytes: int = 256 << 20,
         snapshot_interval: int = 3600, shm_socket: str | None = None,
         history: str | None = None, history_interval: float = 60) -> Client:
    """The engine in this process (no server). In memory only without ``data_dir``; with one,
    durable like quiverd: what is there is recovered, every write is logged before it is
    acknowledged (``fsync``: "always", "everysec" or "no"), and tables are snapshotted once the
    log grew ``snapshot_wal_bytes`` or every ``snapshot_interval`` seconds (0: never). One
    process at a time may open a directory; ``close()`` releases it (docs/durability.md). With a
    data directory the tables are also published for other processes on this host
    (``quiver.connect("shm://<data_dir>")``, docs/shm.md) through ``shm_socket`` (default
    ``<data_dir>/quiver.sock``; ``"off"``: not published). ``history`` (with a data directory):
    every table change is also written, every ``history_interval`` seconds and at ``close()``, to
    a Parquet dataset at this URI for ``quiver.offline.point_in_time`` (docs/offline.md)."""
    from ._embedded import EmbeddedBackend

    return Client(EmbeddedBackend(None if data_dir is None else os.fspath(data_dir), fsync,
                                  snapshot_wal_bytes, snapshot_interval,
                                  None if shm_socket is None else os.fspath(shm_socket),
                                  None if history is None else os.fspath(history),
                                  history_interval))


def connect(url: str, *, timeout: float = 30.0) -> Client:
    """A client of a running quiverd: ``http://host:port`` (HTTP), ``grpc://host:port`` (Arrow
    Flight), or ``shm:///path`` (its tables mapped into this process, read-only: the path of its
    socket, or its data directory holding ``quiver.sock``). ``timeout``: seconds per request
    (HTTP and Flight)."""
    if url.startswith("http://"):
        from ._http import HttpBackend

        return Client(HttpBackend(url, timeout))
    if url.startswith(("grpc://", "grpc+tcp://")):
        from ._flight import FlightBackend

        return Client(FlightBackend(url, timeout))
    if url.startswith("shm://"):
        from ._shm import ShmBackend

        return Client(ShmBackend(url))
    raise ValueError(f"quiver.connect() takes an http://, grpc:// or shm:// URL, not {url!r}")
