"""The quiver command line against the real quiverd."""

import json
import pathlib
import subprocess
import sys

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

QUIVER = pathlib.Path(sys.executable).parent / "quiver"


def run(server, *args, check=True):
    result = subprocess.run([str(QUIVER), "--url", server.url, *args], capture_output=True,
                            text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_create_load_get_delete_drop(quiverd, name, tmp_path):
    schema = {"key": "id", "columns": {"id": {"dtype": "int64"}, "x": {"dtype": "float32"},
                                       "s": {"dtype": "utf8"}}}
    assert run(quiverd, "create", name, json.dumps(schema)).stdout.startswith(f"created {name}: ")
    assert name in run(quiverd, "tables").stdout.split()
    assert json.loads(run(quiverd, "schema", name).stdout)["columns"]["x"]["dtype"] == "float32"
    # A directory of Parquet, Arrow IPC (file and stream) and CSV files.
    data = tmp_path / "data"
    (data / "nested").mkdir(parents=True)
    pq.write_table(pa.table({"id": [1, 2], "x": [0.5, 1.5], "s": ["a", "b"]}), data / "a.parquet")
    table = pa.table({"id": [3, 4], "x": [2.5, 3.5], "s": ["c", "d"]})
    with pa.ipc.new_file(data / "b.arrow", table.schema) as w:
        w.write_table(table)
    with pa.ipc.new_stream(data / "nested" / "c.arrows", table.schema) as w:
        w.write_table(pa.table({"id": [5], "x": [4.5], "s": ["e"]}))
    pacsv.write_csv(pa.table({"id": [6, 7], "x": [5.5, 6.5], "s": ["f", "g"]}),
                    data / "nested" / "d.csv")
    loaded = run(quiverd, "load", name, str(data))
    assert "7 rows written, 0 skipped" in loaded.stdout
    assert "rows/s" in loaded.stderr  # the progress bar
    got = run(quiverd, "get", name, "7", "1", "99", "--columns", "x,s").stdout
    lines = got.splitlines()
    assert lines[0].split() == ["key", "x", "s"]
    assert lines[2].split() == ["7", "6.5", "g"] and lines[4].split() == ["99", "null", "null"]
    assert "(2 of 3 keys found)" in got
    rows = [json.loads(line) for line in
            run(quiverd, "get", name, "2", "--format", "json").stdout.splitlines()]
    assert rows == [{"key": 2, "found": True, "x": 1.5, "s": "b"}]
    assert run(quiverd, "delete", name, "1", "2", "99").stdout.strip() == "deleted 2 of 3 keys"
    assert run(quiverd, "drop", name).stdout.strip() == f"dropped {name}"


@pytest.mark.parametrize("args, message", [
    (["schema", "nope_table"], "table 'nope_table' does not exist"),
    (["create", "x", "{not json"], "the schema is not JSON"),
    (["create", "x", "@/no/such/file"], "/no/such/file"),
    (["load", "nope_table", "/no/such/dir"], "does not exist"),
    (["get", "nope_table", "a"], "does not exist"),
])
def test_errors_are_one_line_and_a_failure_status(quiverd, args, message):
    result = run(quiverd, *args, check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("quiver: error: ")
    assert message in result.stderr


def test_load_errors_name_the_file(quiverd, name, tmp_path):
    run(quiverd, "create", name, json.dumps({"key": "id", "columns": {"id": {"dtype": "int64"}}}))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    result = run(quiverd, "load", name, str(bad), check=False)
    assert result.returncode == 1 and str(bad) in result.stderr
    odd = tmp_path / "x.txt"
    odd.write_text("1\n")
    result = run(quiverd, "load", name, str(odd), check=False)
    assert result.returncode == 1 and "unknown file type" in result.stderr
    result = run(quiverd, "get", name, "not-a-number", check=False)
    assert result.returncode == 1 and "keys of table" in result.stderr


def test_usage_errors_exit_2_and_no_server_exits_1(quiverd):
    assert run(quiverd, "frobnicate", check=False).returncode == 2
    result = subprocess.run([str(QUIVER), "--url", "http://127.0.0.1:9", "tables"],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "cannot connect" in result.stderr


def test_create_from_a_file_and_load_chosen_columns(quiverd, name, tmp_path):
    data = tmp_path / "flights.parquet"
    pq.write_table(pa.table({
        "flight": pa.array([1, 2, 3], pa.int32()),
        "carrier": pa.array(["AA", "UA", "AA"]).dictionary_encode(),
        "delay": [1.5, None, -3.0],
        "seats": pa.array([120, 180, 90], pa.int16()),
        "when": pa.array([1, 2, 3], pa.timestamp("ms")),
        "notes": pa.array([None, None, None], pa.null()),
    }), data)
    # The schema shown, nothing created.
    shown = json.loads(run(quiverd, "create", name, "--from", str(data), "--key", "flight",
                           "--columns", "carrier,delay,seats,when", "--dry-run").stdout)
    assert shown == {"key": "flight", "columns": {
        "flight": {"dtype": "int64"}, "carrier": {"dtype": "utf8", "nullable": True},
        "delay": {"dtype": "float64", "nullable": True}, "seats": {"dtype": "int16", "nullable": True},
        "when": {"dtype": "timestamp[ms]", "nullable": True}}}
    assert name not in run(quiverd, "tables", "--names").stdout.split()
    failed = run(quiverd, "create", name, "--from", str(data), "--key", "flight", check=False)
    assert failed.returncode == 1 and "column 'notes' holds only nulls" in failed.stderr
    created = run(quiverd, "create", name, "--from", str(data), "--key", "flight",
                  "--columns", "carrier,delay,seats", "--ttl", "3600").stdout
    assert created.startswith(f"created {name}: flight int64 not null, carrier utf8")
    # The file has columns the table does not: refused unless asked.
    refused = run(quiverd, "load", name, str(data), check=False)
    assert refused.returncode == 1
    assert "has no column 'when', 'notes'" in refused.stderr
    assert "--ignore-extra-columns" in refused.stderr
    assert "3 rows written" in run(quiverd, "load", name, str(data), "--ignore-extra-columns",
                                   "--quiet").stdout
    assert "3 rows written" in run(quiverd, "load", name, str(data), "--columns", "seats",
                                   "--quiet").stdout
    bad = run(quiverd, "load", name, str(data), "--columns", "nope", check=False)
    assert bad.returncode == 1 and f"table '{name}' has no column 'nope'" in bad.stderr
    listing = run(quiverd, "tables").stdout.splitlines()
    assert listing[0].split() == ["table", "rows", "bytes", "ttl", "key", "columns"]
    row = next(line.split() for line in listing[2:] if line.split()[0] == name)
    assert row[1] == "3" and row[4] == "3600s" and row[5] == "flight"
    info = json.loads(run(quiverd, "describe", name).stdout)
    assert info["rows"] == 3 and info["ttl"] == 3600.0
