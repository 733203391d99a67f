"""The example repository's feature definitions (docs/feast.md): drivers keyed by an int64 id, with
a feature of each kind Feast stores, and driver-customer pairs keyed by both (a composite key).
make_data.py writes the Parquet files they read."""

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import (Array, Bool, Bytes, Float32, Float64, Int32, Int64, String,
                         UnixTimestamp)

DATA = Path(__file__).resolve().parent / "data"

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)

driver_stats = FeatureView(
    name="driver_stats",
    entities=[driver],
    ttl=timedelta(days=365),
    schema=[
        Field(name="driver_id", dtype=Int64),
        Field(name="conv_rate", dtype=Float32),
        Field(name="acc_rate", dtype=Float64),
        Field(name="avg_daily_trips", dtype=Int64),
        Field(name="rating", dtype=Int32),
        Field(name="active", dtype=Bool),
        Field(name="city", dtype=String),
        Field(name="badge", dtype=Bytes),
        Field(name="last_trip", dtype=UnixTimestamp),
        Field(name="embedding", dtype=Array(Float32), vector_length=8),
        Field(name="trip_counts", dtype=Array(Int64)),
        Field(name="ratings", dtype=Array(Float64)),
        Field(name="tags", dtype=Array(String)),
    ],
    online=True,
    source=FileSource(name="driver_stats_source", path=str(DATA / "driver_stats.parquet"),
                      timestamp_field="event_timestamp", created_timestamp_column="created"),
)

driver_customer = FeatureView(
    name="driver_customer",
    entities=[driver, customer],
    ttl=timedelta(days=365),
    schema=[
        Field(name="driver_id", dtype=Int64),
        Field(name="customer_id", dtype=String),
        Field(name="trips_together", dtype=Int64),
        Field(name="affinity", dtype=Float32),
    ],
    online=True,
    source=FileSource(name="driver_customer_source", path=str(DATA / "driver_customer.parquet"),
                      timestamp_field="event_timestamp"),
)

driver_activity = FeatureService(name="driver_activity", features=[driver_stats, driver_customer])
