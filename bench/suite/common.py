"""What the suite measures: the datasets (their values, Arrow tables and Redis encodings), the
key sets every system is asked for, and percentiles. Shared by the orchestrator (run.py) and the
client processes (worker.py)."""

from __future__ import annotations

import datetime
import json
import pathlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (its first use costs ~0.2 s: imported before any clock starts)

BATCH_KEYS = 1000
# Key sets cycled by a latency or throughput loop: enough that the server's caches see a fresh
# set most of the time, few enough to build quickly in each client process.
KEY_SETS = 256


@dataclass(frozen=True)
class Dataset:
    """N rows with string keys "0".."N-1" and `width` float32 features per row, stored either as
    `width` float32 columns (f0..f9) or as one fixed_size_list<float32, width> column (emb)."""

    name: str
    width: int
    embedding: bool

    @property
    def columns(self) -> list[str]:
        return ["emb"] if self.embedding else [f"f{c}" for c in range(self.width)]

    @property
    def schema(self) -> pa.Schema:
        if self.embedding:
            features = [("emb", pa.list_(pa.float32(), self.width))]
        else:
            features = [(c, pa.float32()) for c in self.columns]
        return pa.schema([("id", pa.string())] + features)

    @property
    def row_bytes(self) -> int:
        return 4 * self.width

    def block(self, ids: np.ndarray) -> np.ndarray:
        """The (len(ids), width) float32 features of rows `ids`: small integers and halves, so
        every value is exact in float32 and any system's answer can be checked bit for bit."""
        ids = np.asarray(ids, dtype=np.int64)[:, None]
        lanes = np.arange(self.width, dtype=np.int64)[None, :]
        if self.embedding:
            return (((ids + 7 * lanes) % 1000) * 0.25).astype(np.float32)
        return (((ids * (lanes + 1)) % 1000) * 0.5).astype(np.float32)

    def arrow_table(self, start: int, block: np.ndarray) -> pa.Table:
        """Rows start.. with features `block` as an Arrow table (keys made here, from integers)."""
        keys = pa.array(np.arange(start, start + len(block))).cast(pa.string())
        if self.embedding:
            values = pa.FixedSizeListArray.from_arrays(pa.array(block.ravel()), self.width)
            return pa.table([keys, values], schema=self.schema)
        return pa.table([keys] + [pa.array(block[:, c]) for c in range(self.width)],
                        schema=self.schema)

    def redis_fields(self) -> list[str]:
        """Feast-style hash fields: one per feature column (a single field for the embedding)."""
        return self.columns


DATASETS = {
    "float32x10": Dataset("float32x10", 10, embedding=False),
    "embedding128": Dataset("embedding128", 128, embedding=True),
}


def key_sets(seed: int, rows: int, size: int, count: int = KEY_SETS) -> list[tuple[np.ndarray, list[str]]]:
    """`count` sets of `size` random row ids (with their string keys), the same for every system
    given the same seed."""
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(count):
        ids = rng.integers(0, rows, size)
        sets.append((ids, [str(i) for i in ids]))
    return sets


def percentiles(samples_us: np.ndarray) -> dict[str, float]:
    return {"p50_us": float(np.percentile(samples_us, 50)),
            "p99_us": float(np.percentile(samples_us, 99)),
            "p999_us": float(np.percentile(samples_us, 99.9)),
            "mean_us": float(samples_us.mean()),
            "samples": int(samples_us.size)}


def save_results(name: str, results: dict, lines: list[str]) -> pathlib.Path:
    """Writes bench/results/<name>-<UTC>/results.json and results.md (`lines`), prints the
    table and where it went; returns the directory."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = pathlib.Path(__file__).resolve().parents[1] / "results" / f"{name}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten to {out}")
    return out
