"""Embeddings: a fixed-size-list column written from a NumPy matrix, read back as one."""

import numpy as np

import quiver

db = quiver.open()
db.create_table("items", {
    "key": "item",
    "columns": {"item": {"dtype": "utf8"}, "vector": {"dtype": "fixed_size_list[float32, 64]"}},
})
vectors = np.random.default_rng(1).standard_normal((1000, 64)).astype(np.float32)
db.write("items", {"item": [f"item-{i}" for i in range(1000)], "vector": vectors})

matrix = db.read("items", ["item-3", "item-999"]).to_numpy()  # (2, 64), no copy
np.testing.assert_array_equal(matrix, vectors[[3, 999]])
print(matrix.shape, matrix.dtype)
