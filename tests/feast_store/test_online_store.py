"""quiver.feast.QuiverOnlineStore (docs/feast.md) under the real Feast CLI: the example repository
(examples/feast) applied and materialized into a real quiverd and into the embedded engine, read
with get_online_features and compared value by value with Feast's own Redis online store on a real
redis-server; then the bad inputs. Runs in .venv-feast (requirements-feast.txt)."""

import os
import pathlib
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
import requests
from feast import FeatureStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

import quiver
from quiverd import free_port, start_redis

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "feast"
FEAST = pathlib.Path(sys.executable).parent / "feast"
END = "2026-12-02T00:00:00"
START = "2026-11-01T00:00:00"
FEATURES = ["driver_stats:conv_rate", "driver_stats:acc_rate", "driver_stats:avg_daily_trips",
            "driver_stats:rating", "driver_stats:active", "driver_stats:city",
            "driver_stats:badge", "driver_stats:last_trip", "driver_stats:embedding",
            "driver_stats:trip_counts", "driver_stats:ratings", "driver_stats:tags",
            "driver_customer:trips_together", "driver_customer:affinity"]


@pytest.fixture
def repo(tmp_path):
    """A copy of the example repository with its data (40 drivers)."""
    path = tmp_path / "repo"
    shutil.copytree(EXAMPLE, path, ignore=shutil.ignore_patterns("data", "__pycache__"))
    subprocess.run([sys.executable, "make_data.py"], cwd=path, check=True,
                   env=dict(os.environ, DRIVERS="40"))
    return path


@pytest.fixture
def redis_server(tmp_path):
    process, port = start_redis(tmp_path)
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait()


def feast(repo, env, *args, yaml=None, check=True):
    command = [str(FEAST)] + (["-f", str(repo / yaml)] if yaml else []) + list(args)
    result = subprocess.run(command, cwd=repo, env=dict(os.environ, **env), capture_output=True,
                            text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def entity_rows():
    rows = [{"driver_id": 1000 + d, "customer_id": f"customer-{(d * 7) % 50}"} for d in range(40)]
    return rows + [{"driver_id": 99, "customer_id": "nobody"}]  # missing everywhere


def online(repo, env, yaml="feature_store.yaml", rows=None):
    os.environ.update(env)
    store = FeatureStore(repo_path=str(repo), fs_yaml_file=repo / yaml)
    return store.get_online_features(features=FEATURES, entity_rows=rows or entity_rows()).to_dict()


def test_materialized_features_match_feasts_redis_store(repo, start_server, redis_server, tmp_path):
    server = start_server()
    quiver_env = {"QUIVER_URL": server.url, "REDIS_ADDRESS": redis_server}
    feast(repo, quiver_env, "apply")
    feast(repo, quiver_env, "materialize", START, END)
    feast(repo, quiver_env, "apply", yaml="feature_store_redis.yaml")
    feast(repo, quiver_env, "materialize", START, END, yaml="feature_store_redis.yaml")
    want = online(repo, quiver_env, "feature_store_redis.yaml")
    got = online(repo, quiver_env)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == want[name], name
    assert got["conv_rate"][-1] is None and got["city"][0] is None  # missing, and a null
    assert len(got["embedding"][0]) == 8
    # One table per feature view, keyed by the join keys; the event-time guard in place.
    described = requests.get(f"{server.url}/api/v1/table/quiver_demo.driver_customer").json()
    assert described["key"] == ["customer_id", "driver_id"]
    assert described["event_time"] == "event_ts"
    assert described["rows"] == 120
    stats = requests.get(f"{server.url}/api/v1/table/quiver_demo.driver_stats").json()
    dtypes = {column["name"]: column["dtype"] for column in stats["columns"]}
    assert dtypes["conv_rate"] == "float32" and dtypes["embedding"] == "fixed_size_list[float32, 8]"
    assert dtypes["tags"] == "binary"  # a list of strings: the serialized Value
    assert stats["ttl"] == 365 * 86400


def test_the_embedded_engine_serves_the_same_features(repo, tmp_path, redis_server):
    env = {"QUIVER_URL": str(tmp_path / "quiver-data"), "REDIS_ADDRESS": redis_server}
    feast(repo, env, "apply")
    feast(repo, env, "materialize", START, END)
    feast(repo, env, "apply", yaml="feature_store_redis.yaml")
    feast(repo, env, "materialize", START, END, yaml="feature_store_redis.yaml")
    assert online(repo, env) == online(repo, env, "feature_store_redis.yaml")


def test_late_rows_never_overwrite_newer_ones_and_reapply_evolves_tables(repo, start_server):
    server = start_server()
    env = {"QUIVER_URL": server.url}
    feast(repo, env, "apply")
    feast(repo, env, "materialize", START, END)
    os.environ.update(env)
    store = FeatureStore(repo_path=str(repo))
    fv = store.get_feature_view("driver_stats")
    online_store = store._get_provider().online_store
    key = EntityKey(join_keys=["driver_id"], entity_values=[Value(int64_val=1000)])
    before = online_store.online_read(store.config, fv, [key], ["conv_rate"])[0]
    late = before[0] - timedelta(days=1)
    online_store.online_write_batch(store.config, fv, [
        (key, {"conv_rate": Value(float_val=42.0)}, late, None)], None)
    assert online_store.online_read(store.config, fv, [key], ["conv_rate"])[0] == before
    newer = before[0] + timedelta(seconds=1)
    online_store.online_write_batch(store.config, fv, [
        (key, {"conv_rate": Value(float_val=42.0)}, newer, None)], None)
    after = online_store.online_read(store.config, fv, [key], ["conv_rate"])[0]
    assert after[0] == newer and after[1]["conv_rate"].float_val == 42.0
    # A feature added to the view: the table gains the column, its rows stay.
    definitions = (repo / "features.py").read_text()
    (repo / "features.py").write_text(definitions.replace(
        '        Field(name="rating", dtype=Int32),',
        '        Field(name="rating", dtype=Int32),\n        Field(name="bonus", dtype=Float64),'))
    feast(repo, env, "apply")
    described = requests.get(f"{server.url}/api/v1/table/quiver_demo.driver_stats").json()
    assert "bonus" in [column["name"] for column in described["columns"]]
    assert described["rows"] == 40
    # teardown drops the tables.
    feast(repo, env, "teardown")
    assert "quiver_demo.driver_stats" not in quiver.connect(server.url).list_tables()


def test_bad_inputs_are_clear_errors_that_change_nothing(repo, start_server):
    server = start_server()
    db = quiver.connect(server.url)
    # The feature view's table exists with another key: refused, the table kept as it was.
    db.create_table("quiver_demo.driver_stats", {"key": "other", "columns": {
        "other": {"dtype": "utf8"}, "x": {"dtype": "float32"}}})
    db.write("quiver_demo.driver_stats", pa.table({"other": ["a"], "x": [1.0]}))
    result = feast(repo, {"QUIVER_URL": server.url}, "apply", check=False)
    assert result.returncode != 0
    assert "table 'quiver_demo.driver_stats' exists with key 'other'" in result.stderr
    assert db.describe("quiver_demo.driver_stats")["rows"] == 1
    assert "quiver_demo.driver_customer" not in db.list_tables()  # nothing applied
    db.drop_table("quiver_demo.driver_stats")
    # A join key Quiver cannot key by.
    definitions = (repo / "features.py").read_text()
    (repo / "features.py").write_text(definitions.replace(
        'join_keys=["driver_id"], value_type=ValueType.INT64',
        'join_keys=["driver_id"], value_type=ValueType.DOUBLE').replace(
        'Field(name="driver_id", dtype=Int64)', 'Field(name="driver_id", dtype=Float64)'))
    result = feast(repo, {"QUIVER_URL": server.url}, "apply", check=False)
    assert result.returncode != 0
    assert "join key 'driver_id' has type DOUBLE; Quiver keys are int64 or utf8" in result.stderr
    assert db.list_tables() == []
    (repo / "features.py").write_text(definitions)
    # A server that is down: the error names the URL.
    down = f"http://127.0.0.1:{free_port()}"
    result = feast(repo, {"QUIVER_URL": down}, "apply", check=False)
    assert result.returncode != 0
    assert f"the Quiver online store at {down} is unreachable" in result.stderr


def test_flight_writes_and_shared_memory_reads_serve_the_same_features(repo, start_server):
    server = start_server()
    flight = {"QUIVER_URL": server.flight_url}
    feast(repo, flight, "apply")
    feast(repo, flight, "materialize", START, END)
    over_flight = online(repo, flight)
    over_http = online(repo, {"QUIVER_URL": server.url})
    # Shared memory serves reads (the composite-key view included); writes need another URL.
    over_shm = online(repo, {"QUIVER_URL": f"shm://{server.data_dir}"})
    assert over_flight == over_http == over_shm
    assert over_http["affinity"][0] is not None
    result = feast(repo, {"QUIVER_URL": f"shm://{server.data_dir}"}, "materialize", START, END,
                   check=False)
    assert result.returncode != 0 and "read-only" in result.stderr


def test_a_value_of_another_kind_is_refused_not_stored_as_null(repo, start_server):
    server = start_server()
    env = {"QUIVER_URL": server.url}
    feast(repo, env, "apply")
    os.environ.update(env)
    store = FeatureStore(repo_path=str(repo))
    fv = store.get_feature_view("driver_stats")
    online_store = store._get_provider().online_store
    key = EntityKey(join_keys=["driver_id"], entity_values=[Value(int64_val=7)])
    now = datetime.now(timezone.utc)
    with pytest.raises(ValueError, match="feature 'conv_rate' is float32 .* a string_val value"):
        online_store.online_write_batch(store.config, fv, [
            (key, {"conv_rate": Value(string_val="oops")}, now, None)], None)
    assert online_store.online_read(store.config, fv, [key], ["conv_rate"]) == [(None, None)]
    with pytest.raises(ValueError, match="join key 'driver_id' is int64, given a string_val"):
        online_store.online_read(store.config, fv, [EntityKey(
            join_keys=["driver_id"], entity_values=[Value(string_val="x")])], ["conv_rate"])


def test_push_sources_and_a_join_key_among_the_features(start_server, tmp_path):
    """Pushed rows (FeatureStore.push, write_to_online_store) go through online_write_batch; a
    feature view may list its entity's column among its features (Feast's own tests do): it is
    served from the entity key, not stored twice."""
    import pandas as pd
    from feast import Entity, Field, FileSource, PushSource, RepoConfig
    from feast.stream_feature_view import StreamFeatureView
    from feast.types import Float64, Int32, Int64, String

    server = start_server()
    data = tmp_path / "locations.parquet"
    start = datetime(2026, 12, 1, tzinfo=timezone.utc)
    pd.DataFrame({"location_id": [1, 2], "temperature": [10, 20],
                  "event_timestamp": [start, start]}).to_parquet(data)
    location = Entity(name="location_id")  # no value type: Feast infers it from the schema
    push = PushSource(name="location_push", batch_source=FileSource(
        path=str(data), timestamp_field="event_timestamp"))
    view = StreamFeatureView(name="location_stats", entities=[location], ttl=timedelta(days=2),
                             schema=[Field(name="temperature", dtype=Int32),
                                     Field(name="location_id", dtype=Int64),
                                     Field(name="label", dtype=String)], source=push)
    config = RepoConfig(project="push_demo", provider="local", registry=str(tmp_path / "reg.db"),
                        online_store={"type": "quiver.feast.QuiverOnlineStore",
                                      "url": server.url},
                        offline_store={"type": "file"}, entity_key_serialization_version=3,
                        repo_path=str(tmp_path))
    store = FeatureStore(config=config)
    store.apply([location, view])
    described = requests.get(f"{server.url}/api/v1/table/push_demo.location_stats").json()
    assert [column["name"] for column in described["columns"]] == [
        "location_id", "temperature", "label", "event_ts", "created_ts"]  # the key once

    now = datetime.now(timezone.utc)
    store.push("location_push", pd.DataFrame({
        "location_id": [1, 2], "temperature": [15, 25], "label": ["a", None],
        "event_timestamp": [now, now], "created": [now, now]}))
    store.write_to_online_store("location_stats", pd.DataFrame({
        "location_id": [3], "temperature": [-4], "label": ["c"],
        "event_timestamp": [now], "created": [now]}))
    rows = [{"location_id": i} for i in (1, 2, 3, 4)]
    got = store.get_online_features(
        features=["location_stats:temperature", "location_stats:location_id",
                  "location_stats:label"], entity_rows=rows).to_dict()
    assert got["temperature"] == [15, 25, -4, None]
    assert got["label"] == ["a", None, "c", None]
    # The feature, as Feast's Redis store serves it too: absent for an entity never written.
    assert got["location_id"] == [1, 2, 3, None]
    # Read alone, the join-key feature comes back for found rows only.
    online_store = store._get_provider().online_store
    keys = [EntityKey(join_keys=["location_id"], entity_values=[Value(int64_val=i)])
            for i in (3, 4)]
    read = online_store.online_read(config, store.get_stream_feature_view("location_stats"),
                                    keys, ["location_id", "temperature"])
    assert read[0][1]["location_id"].int64_val == 3
    assert read[0][1]["temperature"].int32_val == -4
    assert read[1] == (None, None)
