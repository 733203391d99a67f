"""The ``quiver`` command line: tables, schema, create, drop, load, get, delete against a quiverd.

    quiver --url http://127.0.0.1:8080 tables
    quiver create docs '{"key": "id", "columns": {"id": {"dtype": "utf8"}, "x": {"dtype": "float32"}}}'
    quiver load docs data/                  # Parquet, Arrow IPC and CSV files, or directories
    quiver load docs s3://bucket/features/  # ... also in object storage (pyarrow.fs URIs)
    quiver get docs a b c --columns x
    quiver alter docs --add g float32 --drop old --rename x score --alter n int64 --ttl 3600
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
from ._schema import key_fields

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


def _batches(source: _Source, schema: pa.Schema, rows: int,
             columns: list[str]) -> Iterator[pa.RecordBatch]:
    """The file's batches, of `columns` only."""
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        with source.open() as f:
            yield from pq.ParquetFile(f).iter_batches(batch_size=rows, columns=columns)
    elif source.kind == "ipc":
        with source.open() as f:
            try:
                reader: Any = pa.ipc.open_file(f)
                batches: Iterator[pa.RecordBatch] = (reader.get_batch(i)
                                                     for i in range(reader.num_record_batches))
            except pa.ArrowInvalid:
                f.seek(0)
                batches = iter(pa.ipc.open_stream(f))
            for batch in batches:
                yield batch.select(columns)
    else:
        import pyarrow.csv as csv

        types = {f.name: f.type for f in schema if f.name in columns}
        with source.fs.open_input_stream(source.path) as f:
            yield from csv.open_csv(f, read_options=csv.ReadOptions(block_size=8 << 20),
                                    convert_options=csv.ConvertOptions(column_types=types,
                                                                       include_columns=columns))


def _wanted_columns(schema: pa.Schema, table: str, source: _Source, names: list[str],
                    args: argparse.Namespace) -> list[str]:
    """The columns of a file to write: --columns (with the key), else those the table has, and
    with an extra column a clear error unless --ignore-extra-columns."""
    key_names = [f.name for f in key_fields(schema)]
    if args.columns:
        wanted = [c for c in args.columns.split(",") if c]
        for column in wanted:
            if schema.get_field_index(column) < 0:
                raise CliError(f"--columns: table '{table}' has no column '{column}'")
            if column not in names:
                raise CliError(f"{source}: no column '{column}' (it has {', '.join(names)})")
        for key in key_names:
            if key not in names:
                raise CliError(f"{source}: no key column '{key}'")
        return key_names + [c for c in wanted if c not in key_names]
    extra = [n for n in names if schema.get_field_index(n) < 0]
    if extra and not args.ignore_extra_columns:
        raise CliError(f"{source}: table '{table}' has no column {', '.join(map(repr, extra))} "
                       "(pass --ignore-extra-columns to leave them out, or --columns to choose)")
    return [n for n in names if schema.get_field_index(n) >= 0]


def _file_schema(source: _Source) -> pa.Schema:
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        with source.open() as f:
            return pq.ParquetFile(f).schema_arrow
    if source.kind == "ipc":
        with source.open() as f:
            try:
                return pa.ipc.open_file(f).schema
            except pa.ArrowInvalid:
                f.seek(0)
                return pa.ipc.open_stream(f).schema
    import pyarrow.csv as csv

    with source.fs.open_input_stream(source.path) as f:
        return csv.open_csv(f, read_options=csv.ReadOptions(block_size=8 << 20)).schema


def _load(db: Any, args: argparse.Namespace) -> None:
    from tqdm import tqdm

    schema = db.schema(args.table)
    files = _files(args.paths, args.format)
    selected = {}
    for source in files:
        try:
            selected[source.path] = _wanted_columns(schema, args.table, source,
                                                    _file_schema(source).names, args)
        except (pa.ArrowException, OSError) as e:
            raise CliError(f"{source}: {e}") from None
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
                for batch in _batches(source, schema, args.batch_rows, selected[source.path]):
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
    """Keys from the command line; a composite key's parts joined by ':' (the last part may hold
    ':')."""
    parts = key_fields(db.schema(table))
    if len(parts) == 1:
        try:
            return pa.array(keys).cast(parts[0].type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise CliError(f"keys of table '{table}' are {parts[0].type}: "
                           f"{' '.join(keys)}") from None
    columns: list[list[str]] = [[] for _ in parts]
    for key in keys:
        split = key.split(":", len(parts) - 1)
        if len(split) != len(parts):
            raise CliError(f"table '{table}' has a key of {len(parts)} columns "
                           f"({', '.join(f.name for f in parts)}): give each key as their values "
                           f"joined by ':', not '{key}'")
        for values, value in zip(columns, split):
            values.append(value)
    arrays = []
    for field, values in zip(parts, columns):
        try:
            arrays.append(pa.array(values).cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise CliError(f"key column '{field.name}' of table '{table}' is {field.type}: "
                           f"{' '.join(values)}") from None
    return pa.StructArray.from_arrays(arrays, names=[f.name for f in parts])


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
    s = sub.add_parser("tables", help="list the tables with their rows, bytes, TTL, key and columns")
    s.add_argument("--names", action="store_true", help="only the names, one per line")
    s = sub.add_parser("describe", help="print a table's rows, bytes, key, TTL and columns (JSON)")
    s.add_argument("table")
    s = sub.add_parser("schema", help="print a table's schema (TableSchema JSON)")
    s.add_argument("table")
    s = sub.add_parser("create", help="create a table from TableSchema JSON, or with the schema of "
                                      "a Parquet, Arrow IPC or CSV file (--from)")
    s.add_argument("table")
    s.add_argument("schema", nargs="?", help="TableSchema JSON text, or @FILE")
    s.add_argument("--from", dest="source", metavar="FILE_OR_URI",
                   help="infer the schema from this file (or the first file of a directory)")
    s.add_argument("--key", help="with --from: the key column (int64 or utf8); a composite "
                   "key's columns separated by commas (user_id,item_id)")
    s.add_argument("--event-time", help="with --from: the event-time column")
    s.add_argument("--ttl", type=float, help="with --from: the table's TTL in seconds")
    s.add_argument("--columns", help="with --from: only these columns (comma-separated)")
    s.add_argument("--dry-run", action="store_true", help="print the schema, create nothing")
    s = sub.add_parser("alter", help="change a table's schema online (all parts at once)",
                       description="Change a table's schema while it serves: every part given "
                                   "is applied together, or none (docs/schema.md).")
    s.add_argument("table")
    s.add_argument("--add", nargs=2, action="append", metavar=("COLUMN", "DTYPE"), default=[],
                   help="add a nullable column (e.g. --add g float32)")
    s.add_argument("--default", nargs=2, action="append", metavar=("COLUMN", "VALUE"), default=[],
                   help="an added or altered column's default (a JSON value: 0, 1.5, '\"x\"'; "
                        "null removes it)")
    s.add_argument("--not-null", action="append", metavar="COLUMN", default=[],
                   help="an added column is not nullable (it needs --default)")
    s.add_argument("--drop", action="append", metavar="COLUMN", default=[], help="drop a column")
    s.add_argument("--rename", nargs=2, action="append", metavar=("OLD", "NEW"), default=[],
                   help="rename a column")
    s.add_argument("--alter", nargs=2, action="append", metavar=("COLUMN", "DTYPE"), default=[],
                   help="widen a column's dtype (int32 -> int64, float32 -> float64, ...)")
    s.add_argument("--nullable", action="append", metavar="COLUMN", default=[],
                   help="make a column nullable")
    s.add_argument("--ttl", help="the table's TTL in seconds ('none': rows never expire)")
    s.add_argument("--change", help="the change as JSON text or @FILE (merged with the options)")
    s = sub.add_parser("drop", help="drop a table")
    s.add_argument("table")
    s = sub.add_parser("load", help="write Parquet, Arrow IPC or CSV files (or directories), "
                                    "local or in object storage (s3://bucket/prefix/...)")
    s.add_argument("table")
    s.add_argument("paths", nargs="+", help="paths or URIs (s3://, file://, ...)")
    s.add_argument("--format", choices=["parquet", "ipc", "csv"], help="default: by extension")
    s.add_argument("--batch-rows", type=int, default=262144, help="rows per write (default 262144)")
    s.add_argument("--columns", help="write only these columns (comma-separated; the key is "
                                     "always written)")
    s.add_argument("--ignore-extra-columns", action="store_true",
                   help="leave out the files' columns the table does not have (default: refuse)")
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
    s.add_argument("keys", nargs="+",
                   help="a composite key's parts joined by ':' (user_id:item_id)")
    s.add_argument("--columns", action="append", help="columns to print (comma-separated)")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s = sub.add_parser("delete", help="delete keys")
    s.add_argument("table")
    s.add_argument("keys", nargs="+",
                   help="a composite key's parts joined by ':' (user_id:item_id)")
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


def _schema_argument(text: str, what: str = "schema") -> dict[str, Any]:
    if text.startswith("@"):
        try:
            text = pathlib.Path(text[1:]).read_text()
        except OSError as e:
            raise CliError(f"{text[1:]}: {e.strerror}") from None
    try:
        schema = json.loads(text)
    except ValueError as e:
        raise CliError(f"the {what} is not JSON: {e}") from None
    if not isinstance(schema, dict):
        raise CliError(f"the {what} must be a JSON object" +
                       (" (a TableSchema)" if what == "schema" else ""))
    return schema


def _inferred_schema(args: argparse.Namespace) -> dict[str, Any]:
    """TableSchema JSON from a file's Arrow schema (create --from)."""
    from ._schema import dtype_name

    source = _files([args.source], None)[0]
    try:
        file_schema = _file_schema(source)
    except (pa.ArrowException, OSError) as e:
        raise CliError(f"{source}: {e}") from None
    wanted = [c for c in args.columns.split(",") if c] if args.columns else file_schema.names
    if args.key is None:
        raise CliError(f"--key: name the key column (one of {', '.join(file_schema.names)})")
    key = [k for k in args.key.split(",") if k]
    wanted = [k for k in key if k not in wanted] + wanted
    columns: dict[str, Any] = {}
    for name in wanted:
        index = file_schema.get_field_index(name)
        if index < 0:
            raise CliError(f"{source}: no column '{name}' (it has {', '.join(file_schema.names)})")
        field = file_schema.field(index)
        t = field.type
        if pa.types.is_dictionary(t):
            t = t.value_type  # categories: their values
        if pa.types.is_date64(t):
            t = pa.date32()
        if name in key:
            if pa.types.is_integer(t):
                t = pa.int64()
            elif not (pa.types.is_string(t) or pa.types.is_large_string(t)):
                raise CliError(f"--key {name}: a key is int64 or utf8, this column is {t}")
            columns[name] = {"dtype": dtype_name(t, name)}
            continue
        if pa.types.is_null(t):
            raise CliError(f"{source}: column '{name}' holds only nulls, so its type is unknown: "
                           "leave it out (--columns) or create the table from JSON")
        try:
            columns[name] = {"dtype": dtype_name(t, name),
                             "nullable": field.nullable or name != args.event_time}
        except QuiverError as e:
            raise CliError(f"{source}: {e} (leave it out with --columns)") from None
    schema: dict[str, Any] = {"key": key[0] if len(key) == 1 else key, "columns": columns}
    if args.event_time:
        if args.event_time not in columns:
            raise CliError(f"--event-time {args.event_time}: not among the columns")
        columns[args.event_time]["nullable"] = False
        schema["event_time"] = args.event_time
    if args.ttl is not None:
        schema["ttl"] = args.ttl
    return schema


def _create(db: Any, args: argparse.Namespace) -> None:
    if args.source is None:
        if args.schema is None:
            raise CliError("give the schema (JSON or @FILE) or --from FILE --key COLUMN")
        schema = _schema_argument(args.schema)
    else:
        if args.schema is not None:
            raise CliError("give the schema or --from, not both")
        schema = _inferred_schema(args)
    if args.dry_run:
        print(json.dumps(schema, indent=2))
        return
    stored = db.create_table(args.table, schema)
    print(f"created {args.table}: " + ", ".join(
        f"{f.name} {_dtype(f)}" + ("" if f.nullable else " not null") for f in stored))


def _dtype(field: pa.Field) -> str:
    from ._schema import dtype_name

    return dtype_name(field.type, field.name)


def _tables(db: Any, args: argparse.Namespace) -> None:
    names = db.list_tables()
    if args.names:
        for name in names:
            print(name)
        return
    rows: dict[str, list[Any]] = {"table": [], "rows": [], "bytes": [], "ttl": [], "key": [],
                                  "columns": []}
    for name in names:
        try:
            info = db.describe(name)
        except QuiverError as e:
            if e.code == "NOT_FOUND":
                continue  # dropped meanwhile
            raise
        rows["table"].append(name)
        rows["rows"].append(info["rows"])
        rows["bytes"].append(_size(info["bytes"]))
        rows["ttl"].append("-" if info["ttl"] is None else f"{info['ttl']:g}s")
        rows["key"].append(info["key"])
        rows["columns"].append(", ".join(f"{c['name']}:{c['dtype']}" for c in info["columns"]
                                         if c["name"] != info["key"]))
    print_table(rows)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _json_value(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise CliError(f"{what}: {text!r} is not a JSON value (strings need quotes: '\"x\"')") \
            from None


def _alter_arguments(args: argparse.Namespace) -> dict[str, Any]:
    change = _schema_argument(args.change, "change") if args.change else {}
    add = dict(change.get("add", {}))
    alter = dict(change.get("alter", {}))
    for name, dtype in args.add:
        add[name] = {"dtype": dtype}
    for name, dtype in args.alter:
        alter.setdefault(name, {})["dtype"] = dtype
    for name in args.nullable:
        alter.setdefault(name, {})["nullable"] = True
    for name in args.not_null:
        if name not in add:
            raise CliError(f"--not-null {name}: not a column added by --add")
        add[name]["nullable"] = False
    for name, value in args.default:
        (add[name] if name in add else alter.setdefault(name, {}))["default"] = _json_value(
            value, f"--default {name}")
    kwargs: dict[str, Any] = {
        "add": add, "alter": alter,
        "drop": list(change.get("drop", [])) + args.drop,
        "rename": {**change.get("rename", {}), **dict(args.rename)},
    }
    if args.ttl is not None:
        if args.ttl.lower() == "none":
            kwargs["ttl"] = None
        else:
            try:
                kwargs["ttl"] = float(args.ttl)
            except ValueError:
                raise CliError(f"--ttl: {args.ttl!r} is not a number of seconds (or 'none')") \
                    from None
    elif "ttl" in change:
        kwargs["ttl"] = change["ttl"] or None
    if not any(kwargs[k] for k in ("add", "alter", "drop", "rename")) and "ttl" not in kwargs:
        raise CliError("nothing to change: give --add, --drop, --rename, --alter, --nullable, "
                       "--default, --ttl or --change")
    return kwargs


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
            _tables(db, args)
        elif args.command == "describe":
            print(json.dumps(db.describe(args.table), indent=2))
        elif args.command == "alter":
            schema = db.alter_table(args.table, **_alter_arguments(args))
            print(f"altered {args.table}: " + ", ".join(
                f"{f.name} {_dtype(f)}" + ("" if f.nullable else " not null") for f in schema))
        elif args.command == "schema":
            print(json.dumps(db.table_schema(args.table), indent=2))
        elif args.command == "create":
            _create(db, args)
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
