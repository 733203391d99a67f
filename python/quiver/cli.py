"""The ``quiver`` command line: tables, schema, create, drop, load, get, delete against a quiverd.

    quiver --url http://127.0.0.1:8080 tables
    quiver create docs '{"key": "id", "columns": {"id": {"dtype": "utf8"}, "x": {"dtype": "float32"}}}'
    quiver load docs data/                  # Parquet, Arrow IPC and CSV files, or directories
    quiver load docs s3://bucket/features/  # ... also in object storage (pyarrow.fs URIs)
    quiver get docs a b c --columns x
    quiver export docs s3://bucket/docs.parquet  # the whole table, streamed

Errors print one line, ``quiver: error: ...``, and exit with status 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from typing import Any, Iterator, Sequence

import pyarrow as pa

from . import QuiverError, connect

DEFAULT_URL = "http://127.0.0.1:8080"
_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".arrow": "ipc", ".ipc": "ipc",
            ".feather": "ipc", ".arrows": "ipc", ".csv": "csv"}


class CliError(Exception):
    """A failure to report on one line."""


# --- load ------------------------------------------------------------------------------------

class _Source:
    """A file to load: local, or in an object store (s3://bucket/key, file:///path, any URI
    pyarrow.fs.FileSystem.from_uri reads, with its query options and the usual AWS credentials)."""

    def __init__(self, fs: Any, path: str, kind: str, shown: str):
        self.fs, self.path, self.kind, self.shown = fs, path, kind, shown

    def __str__(self) -> str:
        return self.shown

    def open(self) -> Any:
        return self.fs.open_input_file(self.path)


def _filesystem(text: str) -> tuple[Any, str, str]:
    """(filesystem, path in it, how to show a path's prefix) for a local path or a URI."""
    import pyarrow.fs as pafs

    if "://" not in text:
        return pafs.LocalFileSystem(), str(pathlib.Path(text).absolute()), ""
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise CliError(f"{text}: {e}") from None
    return fs, path, text.split("://", 1)[0] + "://"


def _files(paths: Sequence[str], fmt: str | None) -> list[_Source]:
    import pyarrow.fs as pafs

    out = []
    for text in paths:
        fs, path, scheme = _filesystem(text)
        shown = (lambda p: p) if not scheme else (lambda p: scheme + p)
        try:
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.Directory:
                found = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))
                               if i.type == pafs.FileType.File
                               and pathlib.PurePosixPath(i.path).suffix.lower() in _FORMATS)
                if not found:
                    raise CliError(f"{text}: no Parquet, Arrow IPC or CSV files in this directory")
                out += [_Source(fs, p, fmt or _FORMATS[pathlib.PurePosixPath(p).suffix.lower()],
                                shown(p)) for p in found]
            elif info.type == pafs.FileType.File:
                kind = fmt or _FORMATS.get(pathlib.PurePosixPath(path).suffix.lower())
                if kind is None:
                    raise CliError(f"{text}: unknown file type (use --format parquet, ipc or csv)")
                out.append(_Source(fs, path, kind, text if scheme else path))
            else:
                raise CliError(f"{text}: no such file or directory")
        except (pa.ArrowException, OSError) as e:
            raise CliError(f"{text}: {e}") from None
    return out


def _count_rows(source: _Source) -> int | None:
    """Rows in a file, from its metadata; for CSV an estimate (lines), None when unknown."""
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        with source.open() as f:
            return pq.ParquetFile(f).metadata.num_rows
    if source.kind == "ipc":
        with source.open() as f:
            try:
                reader = pa.ipc.open_file(f)
                return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
            except pa.ArrowInvalid:
                return None  # a stream: known only once read
    lines = 0
    with source.fs.open_input_stream(source.path) as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
    return max(0, lines - 1)


def _batches(source: _Source, schema: pa.Schema, rows: int) -> Iterator[pa.RecordBatch]:
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        with source.open() as f:
            yield from pq.ParquetFile(f).iter_batches(batch_size=rows)
    elif source.kind == "ipc":
        with source.open() as f:
            try:
                reader: Any = pa.ipc.open_file(f)
                for i in range(reader.num_record_batches):
                    yield reader.get_batch(i)
            except pa.ArrowInvalid:
                f.seek(0)
                yield from pa.ipc.open_stream(f)
    else:
        import pyarrow.csv as csv

        types = {f.name: f.type for f in schema}
        with source.fs.open_input_stream(source.path) as f:
            yield from csv.open_csv(f, read_options=csv.ReadOptions(block_size=8 << 20),
                                    convert_options=csv.ConvertOptions(column_types=types))


def _load(db: Any, args: argparse.Namespace) -> None:
    from tqdm import tqdm

    schema = db.schema(args.table)
    files = _files(args.paths, args.format)
    counts = []
    for source in files:
        try:
            counts.append(_count_rows(source))
        except (pa.ArrowException, OSError) as e:
            raise CliError(f"{source}: {e}") from None
    total = sum(c for c in counts if c is not None) if all(c is not None for c in counts) else None
    written = skipped = 0
    with tqdm(total=total, unit=" rows", unit_scale=True, disable=args.quiet,
              desc=f"loading {args.table}", dynamic_ncols=True) as bar:
        for source in files:
            pending: list[pa.RecordBatch] = []
            pending_rows = 0

            def flush() -> None:
                nonlocal written, skipped, pending, pending_rows
                if not pending_rows:
                    return
                result = db.write(args.table, pa.Table.from_batches(pending))
                written += result.rows_written
                skipped += result.rows_skipped
                bar.update(pending_rows)
                pending, pending_rows = [], 0

            try:
                for batch in _batches(source, schema, args.batch_rows):
                    pending.append(batch)
                    pending_rows += batch.num_rows
                    if pending_rows >= args.batch_rows:
                        flush()
                flush()
            except (pa.ArrowException, OSError) as e:
                raise CliError(f"{source}: {e}") from None
            except QuiverError as e:
                raise CliError(f"{source}: {e} ({written} rows written before)") from None
    print(f"{written} rows written, {skipped} skipped (older event time) from {len(files)} file(s)")


# --- export ----------------------------------------------------------------------------------

_EXPORT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".arrows": "arrow",
                   ".ipc": "arrow"}


def _export(args: argparse.Namespace) -> None:
    """GET /api/v1/table/{name}/export, streamed into a local file or an object (written under a
    temporary name, moved into place once whole: a failed export leaves nothing behind)."""
    import urllib.parse

    import httpx
    from tqdm import tqdm

    import pyarrow.fs as pafs

    url = args.url
    if not url.startswith(("http://", "https://")):
        raise CliError(f"export streams over HTTP: give --url http://HOST:PORT (not {url})")
    fmt = args.format or _EXPORT_FORMATS.get(pathlib.PurePosixPath(
        args.destination.split("?", 1)[0]).suffix.lower(), "parquet")
    fs, path, _ = _filesystem(args.destination)
    temporary = f"{path}.quiver-export-{os.getpid()}.tmp"
    target = f"{url.rstrip('/')}/api/v1/table/{urllib.parse.quote(args.table, safe='')}/export"
    written = 0
    try:
        with httpx.stream("GET", target, params={"format": fmt}, timeout=args.timeout) as response:
            if response.status_code != 200:
                response.read()
                try:
                    message = response.json()["error"]
                except (ValueError, KeyError):
                    message = response.text
                raise CliError(f"{args.table}: {message}")
            with tqdm(unit="B", unit_scale=True, disable=args.quiet,
                      desc=f"exporting {args.table}", dynamic_ncols=True) as bar:
                with fs.open_output_stream(temporary) as out:
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
                        written += len(chunk)
                        bar.update(len(chunk))
        fs.move(temporary, path)
    except (httpx.HTTPError, pa.ArrowException, OSError) as e:
        raise CliError(f"{args.destination}: {e}") from None
    finally:
        try:
            if fs.get_file_info(temporary).type != pafs.FileType.NotFound:
                fs.delete_file(temporary)
        except (pa.ArrowException, OSError):
            pass
    print(f"exported {args.table} to {args.destination}: {written} bytes ({fmt})")


# --- sync ------------------------------------------------------------------------------------

def _sync(db: Any, args: argparse.Namespace) -> None:
    if args.stop:
        db.unsync_table(args.table)
        print(f"{args.table}: unbound from its source")
        return
    if args.status or args.uri is None:
        print(json.dumps(db.sync_status(args.table), indent=2))
        return
    status = db.sync_table(args.table, args.uri, args.poll_seconds)
    print(f"{args.table}: bound to {status['uri']}, polled every {status['poll_seconds']:g} s "
          f"({status['files_loaded']} files loaded so far)")


# --- get -------------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_cell(v) for v in value[:8])
        return f"[{inner}{', ...' if len(value) > 8 else ''}]"
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def print_table(columns: dict[str, list[Any]], out: Any = sys.stdout) -> None:
    """Columns as an aligned text table."""
    names = list(columns)
    cells = [[_cell(v) for v in columns[n]] for n in names]
    widths = [max([len(n)] + [len(c) for c in col]) for n, col in zip(names, cells)]
    rows = len(cells[0]) if cells else 0
    print("  ".join(n.ljust(w) for n, w in zip(names, widths)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for i in range(rows):
        print("  ".join(col[i].ljust(w) for col, w in zip(cells, widths)).rstrip(), file=out)


def _keys(db: Any, table: str, keys: Sequence[str]) -> pa.Array:
    schema = db.schema(table)
    key_field = next(f for f in schema if f.metadata and f.metadata.get(b"quiver.key"))
    try:
        return pa.array(keys).cast(key_field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise CliError(f"keys of table '{table}' are {key_field.type}: {' '.join(keys)}") from None


def _get(db: Any, args: argparse.Namespace) -> None:
    columns = [c for text in args.columns for c in text.split(",") if c] if args.columns else None
    keys = _keys(db, args.table, args.keys)
    result = db.read(args.table, keys, columns)
    if args.format == "json":
        rows = result.to_arrow().to_pylist()
        for key, found, row in zip(keys.to_pylist(), result.found, rows):
            print(json.dumps({"key": key, "found": bool(found), **row}, default=str))
        return
    data = {"key": keys.to_pylist(), **result.to_arrow().to_pydict()}
    print_table(data)
    print(f"({result.found_count} of {len(keys)} keys found)")


# --- main ------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="quiver", description="Quiver feature cache command line.")
    p.add_argument("--url", default=os.environ.get("QUIVER_URL", DEFAULT_URL),
                   help="server: http://HOST:PORT or grpc://HOST:PORT (default: $QUIVER_URL or "
                        f"{DEFAULT_URL})")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("tables", help="list the tables")
    s = sub.add_parser("schema", help="print a table's schema (TableSchema JSON)")
    s.add_argument("table")
    s = sub.add_parser("create", help="create a table from TableSchema JSON")
    s.add_argument("table")
    s.add_argument("schema", help="TableSchema JSON text, or @FILE")
    s = sub.add_parser("drop", help="drop a table")
    s.add_argument("table")
    s = sub.add_parser("load", help="write Parquet, Arrow IPC or CSV files (or directories), "
                                    "local or in object storage (s3://bucket/prefix/...)")
    s.add_argument("table")
    s.add_argument("paths", nargs="+", help="paths or URIs (s3://, file://, ...)")
    s.add_argument("--format", choices=["parquet", "ipc", "csv"], help="default: by extension")
    s.add_argument("--batch-rows", type=int, default=262144, help="rows per write (default 262144)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s = sub.add_parser("export", help="write a whole table to a Parquet file or an Arrow IPC "
                                      "stream, local or in object storage (over HTTP)")
    s.add_argument("table")
    s.add_argument("destination", help="a path or URI (s3://bucket/key.parquet, file://...)")
    s.add_argument("--format", choices=["parquet", "arrow"],
                   help="default: by extension (.arrow, .arrows, .ipc: arrow), else parquet")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s = sub.add_parser("sync", help="keep a table in sync with the Parquet files of a prefix "
                                    "(s3://bucket/prefix/ or a directory the server reads)")
    s.add_argument("table")
    s.add_argument("uri", nargs="?", help="bind to this source (omit with --status or --stop)")
    s.add_argument("--poll-seconds", type=float, help="how often to look for new files (60)")
    s.add_argument("--status", action="store_true", help="print the source's status as JSON")
    s.add_argument("--stop", action="store_true", help="unbind the table from its source")
    s = sub.add_parser("get", help="print the rows of keys")
    s.add_argument("table")
    s.add_argument("keys", nargs="+")
    s.add_argument("--columns", action="append", help="columns to print (comma-separated)")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s = sub.add_parser("delete", help="delete keys")
    s.add_argument("table")
    s.add_argument("keys", nargs="+")
    s = sub.add_parser("snapshot", help="save tables to the server's data directory now")
    s.add_argument("tables", nargs="*", help="default: every table")
    s = sub.add_parser("shm", help="shared-memory readers of a quiverd on this host")
    s.add_argument("action", choices=["status"], help="status: the readers attached, as JSON")
    s.add_argument("--socket", help="the socket, or the data directory holding quiver.sock "
                                    "(default: the --url when it is shm://, else ./quiver-data)")
    return p


def _shm_status(args: argparse.Namespace) -> None:
    from ._shm import ShmBackend

    where = args.socket or (args.url[len("shm://"):] if args.url and args.url.startswith("shm://")
                            else "./quiver-data")
    backend = ShmBackend("shm://" + where)
    print(json.dumps(backend.status(), indent=2))


def _schema_argument(text: str) -> dict[str, Any]:
    if text.startswith("@"):
        try:
            text = pathlib.Path(text[1:]).read_text()
        except OSError as e:
            raise CliError(f"{text[1:]}: {e.strerror}") from None
    try:
        schema = json.loads(text)
    except ValueError as e:
        raise CliError(f"the schema is not JSON: {e}") from None
    if not isinstance(schema, dict):
        raise CliError("the schema must be a JSON object (a TableSchema)")
    return schema


def _run(args: argparse.Namespace) -> None:
    if args.command == "shm":
        _shm_status(args)
        return
    if args.command == "export":
        _export(args)
        return
    try:
        db = connect(args.url, timeout=args.timeout)
    except ValueError as e:
        raise CliError(str(e)) from None
    with db:
        if args.command == "tables":
            for name in db.list_tables():
                print(name)
        elif args.command == "schema":
            print(json.dumps(db.table_schema(args.table), indent=2))
        elif args.command == "create":
            db.create_table(args.table, _schema_argument(args.schema))
            print(f"created {args.table}")
        elif args.command == "drop":
            db.drop_table(args.table)
            print(f"dropped {args.table}")
        elif args.command == "load":
            _load(db, args)
        elif args.command == "sync":
            _sync(db, args)
        elif args.command == "get":
            _get(db, args)
        elif args.command == "delete":
            deleted = db.delete(args.table, _keys(db, args.table, args.keys))
            print(f"deleted {deleted} of {len(args.keys)} keys")
        elif args.command == "snapshot":
            for entry in db.snapshot(args.tables):
                if entry["written"]:
                    print(f"{entry['table']}: {entry['rows']} rows, {entry['bytes']} bytes "
                          f"(LSN {entry['lsn']}) in {entry['seconds'] * 1000:.0f} ms")
                else:
                    print(f"{entry['table']}: unchanged since its last snapshot (LSN {entry['lsn']})")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except (CliError, QuiverError) as e:
        print(f"quiver: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("quiver: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
