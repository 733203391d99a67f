"""Feast's online serving through Quiver against Feast's own Redis online store: `make bench-feast`
(docs/feast.md, docs/benchmarks.md "Feast online store"). Runs in .venv-feast.

One feature view of BENCH_FEAST_FEATURES features (default 50: 30 float32, 10 int64, 10 float64)
over BENCH_FEAST_ENTITIES users (default 10,000; int64 join key), materialized from a local
Parquet file into three online stores, same data, same process, one after the other:
  quiver http   a quiverd on loopback (quiver.feast.QuiverOnlineStore, url http://...)
  quiver embed  the embedded engine in this process (url: a data directory)
  redis         Feast's RedisOnlineStore on a redis-server on loopback (started here)
Each is timed, per call, for FeatureStore.get_online_features of 1 entity and of 100 entities ×
all features, and the online store's online_read of 100 entity keys alone (the protos Feast
hands it built beforehand). Reported: p50 / p99 (µs) and Redis's over Quiver's.
Writes bench/results/feast-<UTC>/results.json and results.md.
"""

from __future__ import annotations

import os
import pathlib
import platform
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType  # noqa: E402
from feast.protos.feast.types.EntityKey_pb2 import EntityKey  # noqa: E402
from feast.protos.feast.types.Value_pb2 import Value  # noqa: E402
from feast.types import Float32, Float64, Int64  # noqa: E402

from common import percentiles, save_results  # noqa: E402
from quiverd import Server, start_redis  # noqa: E402

END = datetime(2026, 12, 1, tzinfo=timezone.utc)


def feature_types(count: int) -> list[tuple[str, object, str]]:
    kinds = []
    for i in range(count):
        if i < count * 3 // 5:
            kinds.append((f"f{i}", Float32, "float32"))
        elif i < count * 4 // 5:
            kinds.append((f"i{i}", Int64, "int64"))
        else:
            kinds.append((f"d{i}", Float64, "float64"))
    return kinds


def write_data(path: pathlib.Path, entities: int, kinds: list) -> None:
    rng = np.random.default_rng(3)
    frame = {"user_id": np.arange(entities, dtype=np.int64),
             "event_timestamp": pd.Series([END - timedelta(hours=1)] * entities)}
    for name, _, dtype in kinds:
        if dtype == "int64":
            frame[name] = rng.integers(0, 1 << 40, entities)
        else:
            frame[name] = rng.random(entities).astype(dtype)
    pd.DataFrame(frame).to_parquet(path, index=False)


def make_store(repo: pathlib.Path, online: str, data: pathlib.Path, kinds: list):
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        f"project: bench\nregistry: {repo / 'registry.db'}\nprovider: local\n"
        f"online_store:\n{online}\noffline_store:\n  type: file\n"
        "entity_key_serialization_version: 3\n")
    store = FeatureStore(repo_path=str(repo))
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    view = FeatureView(name="user_features", entities=[user], ttl=timedelta(days=30),
                       schema=[Field(name="user_id", dtype=Int64)]
                       + [Field(name=name, dtype=dtype) for name, dtype, _ in kinds],
                       online=True,
                       source=FileSource(path=str(data), timestamp_field="event_timestamp"))
    store.apply([user, view])
    store.materialize(END - timedelta(days=2), END)
    return store, store.get_feature_view("user_features")


def timed(call, iterations: int) -> dict[str, float]:
    for _ in range(min(20, iterations)):  # warm
        call(0)
    samples = np.empty(iterations)
    for i in range(iterations):
        start = time.perf_counter()
        call(i)
        samples[i] = (time.perf_counter() - start) * 1e6
    return percentiles(samples)


def measure(store, view, kinds, entities: int, iterations: int) -> dict[str, dict]:
    rng = np.random.default_rng(11)
    features = [f"user_features:{name}" for name, _, _ in kinds]
    names = [name for name, _, _ in kinds]
    singles = [[{"user_id": int(u)}] for u in rng.integers(0, entities, iterations)]
    hundreds = [[{"user_id": int(u)} for u in rng.integers(0, entities, 100)]
                for _ in range(64)]
    key_sets = [[EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=row["user_id"])])
                 for row in rows] for rows in hundreds]
    online_store = store._get_provider().online_store
    config = store.config
    got = store.get_online_features(features=features, entity_rows=hundreds[0]).to_dict()
    assert all(value is not None for value in got[names[0]]), "every entity is present"
    return {
        "get_online_features_1": timed(
            lambda i: store.get_online_features(features=features, entity_rows=singles[i]),
            iterations),
        "get_online_features_100": timed(
            lambda i: store.get_online_features(features=features,
                                                entity_rows=hundreds[i % len(hundreds)]),
            iterations // 4),
        "online_read_100": timed(
            lambda i: online_store.online_read(config, view, key_sets[i % len(key_sets)], names),
            iterations // 4),
    }


def main() -> None:
    entities = int(os.environ.get("BENCH_FEAST_ENTITIES", 10_000))
    count = int(os.environ.get("BENCH_FEAST_FEATURES", 50))
    iterations = int(os.environ.get("BENCH_FEAST_ITERATIONS", 2000))
    kinds = feature_types(count)
    work = pathlib.Path(tempfile.mkdtemp(prefix="quiver-bench-feast-"))
    data = work / "users.parquet"
    write_data(data, entities, kinds)
    results: dict[str, dict] = {}

    server = Server(work, "--shm-socket", "off", start_timeout=60)
    store, view = make_store(work / "quiver-http",
                             f"  type: quiver.feast.QuiverOnlineStore\n  url: {server.url}",
                             data, kinds)
    results["quiver http"] = measure(store, view, kinds, entities, iterations)
    server.stop()

    store, view = make_store(work / "quiver-embed",
                             "  type: quiver.feast.QuiverOnlineStore\n"
                             f"  url: {work / 'embedded-data'}", data, kinds)
    results["quiver embedded"] = measure(store, view, kinds, entities, iterations)

    redis_server, port = start_redis(work)
    store, view = make_store(work / "redis", "  type: redis\n"
                             f"  connection_string: 127.0.0.1:{port}", data, kinds)
    results["redis"] = measure(store, view, kinds, entities, iterations)
    redis_server.terminate()
    redis_server.wait()

    lines = [f"# Feast online store: {count} features, {entities} entities "
             f"({platform.node()}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
             "| call | store | p50 µs | p99 µs | Redis p50 / this p50 |", "|---|---|---:|---:|---:|"]
    for call in ("get_online_features_1", "get_online_features_100", "online_read_100"):
        base = results["redis"][call]["p50_us"]
        for system, figures in results.items():
            row = figures[call]
            lines.append(f"| {call} | {system} | {row['p50_us']:.0f} | {row['p99_us']:.0f} | "
                         f"{base / row['p50_us']:.2f}× |")
    save_results("feast", {"entities": entities, "features": count, "results": results}, lines)


if __name__ == "__main__":
    main()
