"""The embedded engine opened with a data directory: durable like quiverd (docs/durability.md)."""

import subprocess
import sys

import pyarrow as pa
import pytest

import quiver

SCHEMA = pa.schema([("id", pa.string()), ("x", pa.float32()), ("tags", pa.list_(pa.int64()))])


def test_writes_survive_close_and_reopen(tmp_path):
    db = quiver.open(tmp_path, fsync="always")
    db.create_table("t", SCHEMA, key="id")
    db.write("t", {"id": ["a", "b", "c"], "x": [1.0, 2.0, 3.0], "tags": [[1], [], None]})
    [entry] = db.snapshot()
    assert entry["table"] == "t" and entry["written"] and entry["rows"] == 3
    assert db.snapshot("t")[0]["written"] is False  # unchanged since
    db.write("t", {"id": ["b"], "x": [20.0]})
    assert db.delete("t", ["c"]) == 1
    db.close()
    with pytest.raises(quiver.InvalidRequest, match="closed"):
        db.list_tables()

    db = quiver.open(tmp_path)
    result = db.read("t", ["a", "b", "c"])
    assert result.found.tolist() == [True, True, False]
    assert result.to_pandas()["x"].tolist()[:2] == [1.0, 20.0]
    assert result.to_arrow().column("tags").to_pylist()[:2] == [[1], []]
    db.close()


def test_one_process_at_a_time(tmp_path):
    db = quiver.open(tmp_path)
    other = subprocess.run(
        [sys.executable, "-c", f"import quiver; quiver.open({str(tmp_path)!r})"],
        capture_output=True, text=True)
    assert other.returncode != 0
    assert f"data directory '{tmp_path}' is in use (locked by pid" in other.stderr
    db.close()
    quiver.open(tmp_path).close()  # released by close()


def test_bad_settings_and_in_memory_snapshot(tmp_path):
    with pytest.raises(quiver.InvalidRequest, match="fsync must be"):
        quiver.open(tmp_path, fsync="sometimes")
    with pytest.raises(quiver.InvalidRequest, match="no data directory"):
        quiver.open().snapshot()
