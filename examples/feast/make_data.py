"""Writes the example repository's Parquet files (data/): DRIVERS drivers (default 200) with three
hourly rows each (the latest wins) and a row per driver-customer pair. Deterministic."""

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parent / "data"


def main() -> None:
    drivers = int(os.environ.get("DRIVERS", "200"))
    DATA.mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    end = datetime(2026, 12, 1, tzinfo=timezone.utc)
    rows = []
    for hour in range(3):
        at = end - timedelta(hours=2 - hour)
        for d in range(drivers):
            driver_id = 1000 + d
            rows.append({
                "driver_id": driver_id,
                "event_timestamp": at,
                "created": at + timedelta(minutes=5),
                "conv_rate": np.float32(rng.random()),
                "acc_rate": float(rng.random()),
                "avg_daily_trips": int(rng.integers(0, 1000)),
                "rating": np.int32(rng.integers(1, 6)),
                "active": bool(rng.random() < 0.5),
                "city": None if d % 7 == 0 else f"city-{d % 13}",
                "badge": bytes([d % 256, hour, 0, 255]),
                "last_trip": at - timedelta(minutes=int(rng.integers(0, 600))),
                "embedding": rng.random(8, dtype=np.float32),
                "trip_counts": [int(x) for x in rng.integers(0, 50, size=d % 4)],
                "ratings": [float(x) for x in rng.random(2)],
                "tags": [f"tag{d % 3}", f"hour{hour}"],
            })
    frame = pd.DataFrame(rows)
    frame["conv_rate"] = frame["conv_rate"].astype("float32")
    frame["rating"] = frame["rating"].astype("int32")
    frame.to_parquet(DATA / "driver_stats.parquet", index=False)
    pairs = []
    for d in range(drivers):
        for c in range(3):
            pairs.append({
                "driver_id": 1000 + d,
                "customer_id": f"customer-{(d * 7 + c) % 50}",
                "event_timestamp": end,
                "trips_together": int(rng.integers(0, 20)),
                "affinity": np.float32(rng.random()),
            })
    pairs_frame = pd.DataFrame(pairs).drop_duplicates(["driver_id", "customer_id"])
    pairs_frame["affinity"] = pairs_frame["affinity"].astype("float32")
    pairs_frame.to_parquet(DATA / "driver_customer.parquet", index=False)


if __name__ == "__main__":
    main()
