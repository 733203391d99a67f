"""The engine in-process: write a DataFrame, read a feature matrix for a batch of keys."""

import numpy as np
import pandas as pd
import pyarrow as pa

import quiver

db = quiver.open()
db.create_table("users", pa.schema([
    ("user_id", pa.int64()),
    ("age", pa.float32()),
    ("clicks_7d", pa.float32()),
    ("spend_30d", pa.float32()),
]), key="user_id")

frame = pd.DataFrame({
    "user_id": np.arange(100_000),
    "age": np.random.default_rng(0).uniform(18, 80, 100_000).astype(np.float32),
    "clicks_7d": np.arange(100_000, dtype=np.float32) % 50,
    "spend_30d": np.linspace(0, 1000, 100_000, dtype=np.float32),
})
print(db.write("users", frame))  # WriteResult(rows_written=100000, rows_skipped=0)

result = db.read("users", [42, 7, 123_456_789])  # the last key is missing
features = result.to_numpy()  # (3, 3) float32, a view of the engine's buffer; NaN when missing
print(features)
print(result.found)  # [ True  True False]
assert features.shape == (3, 3) and np.isnan(features[2]).all()
assert features[0, 1] == 42 % 50
