"""The client side of each system, written with the same care: one reused connection, requests
built from the same Python list of string keys, pipelining where the system allows it.

Every client has
  arrive(keys)  the request sent and the whole answer received and framed: the response body's
                bytes (HTTP), the package's Arrow result (Flight, whose batches are zero-copy over
                the gRPC messages; embedded), the list of bulk strings (Redis, parsed by
                hiredis); not yet a matrix;
  matrix(keys)  the same, then decoded into a (len(keys), width) float32 NumPy matrix, the way an
                application would get one: quiver's ReadResult.to_numpy(), np.frombuffer over
                the joined Redis values;
  load(start, block)  write rows start.. with features `block` (a float32 matrix, made before the
                clock starts), encoded on the client: keys and values to Arrow, or to Redis
                commands.
"""

from __future__ import annotations

import itertools
from typing import Any

import hiredis
import numpy as np
import pyarrow as pa
import redis

import quiver
from quiver._http import read_call
from common import Dataset

TABLE = "bench"


class QuiverClient:
    """quiverd, or the embedded engine, through the quiver package; HTTP overrides `arrive` to
    stop before the package's Arrow decode."""

    def __init__(self, dataset: Dataset, db: quiver.Client, table: str) -> None:
        self.dataset = dataset
        self.db = db
        self.table = table

    def arrive(self, keys: list[str]) -> Any:
        return self.db.read(self.table, keys)

    def matrix(self, keys: list[str]) -> np.ndarray:
        return self.db.read(self.table, keys).to_numpy()

    def create(self) -> None:
        self.db.create_table(self.table, self.dataset.schema, key="id")

    def load(self, start: int, block: np.ndarray) -> None:
        self.db.write(self.table, self.dataset.arrow_table(start, block))

    def close(self) -> None:
        self.db.close()


class QuiverEmbedded(QuiverClient):
    def __init__(self, dataset: Dataset, endpoints: dict[str, Any], table: str = TABLE) -> None:
        super().__init__(dataset, quiver.open(), table)


class QuiverHttp(QuiverClient):
    """arrive: the quiver package's own request (POST /fetch, the keys as an Arrow IPC stream, on
    its keep-alive connection) stopped before the Arrow decode: the body's bytes in hand."""

    def __init__(self, dataset: Dataset, endpoints: dict[str, Any], table: str = TABLE) -> None:
        super().__init__(dataset, quiver.connect(endpoints["http"]), table)
        self.backend = self.db._backend

    def arrive(self, keys: list[str]) -> bytes:
        status, body = self.backend.exchange(read_call(self.table, pa.array(keys, pa.string()), []))
        if status != 200:
            raise RuntimeError(f"quiverd answered {status}: {bytes(body[:200])!r}")
        return body


class QuiverFlight(QuiverClient):
    """arrive: the quiver package's read, a DoExchange carrying the keys as one Arrow batch; the
    answer is Arrow record batches over the received gRPC messages, nothing more to decode."""

    def __init__(self, dataset: Dataset, endpoints: dict[str, Any], table: str = TABLE) -> None:
        super().__init__(dataset, quiver.connect(endpoints["flight"]), table)


class QuiverShm(QuiverClient):
    """quiverd's tables mapped into this process (the shm backend, read-only: it reads the table
    the HTTP client loaded). arrive: the backend's read(), an Arrow result as every backend gives;
    matrix: the hot path, rows.read_into(keys, out) into a matrix allocated once per key count."""

    def __init__(self, dataset: Dataset, endpoints: dict[str, Any], table: str = TABLE) -> None:
        super().__init__(dataset, quiver.connect(endpoints["shm"]), table)
        self.rows = None
        self.outs: dict[int, np.ndarray] = {}

    def matrix(self, keys: list[str]) -> np.ndarray:
        if self.rows is None:
            self.rows = self.db.table(self.table, self.dataset.columns)
        out = self.outs.get(len(keys))
        if out is None:
            out = self.outs[len(keys)] = np.empty((len(keys), self.rows.width), np.float32)
        self.rows.read_into(keys, out)
        return out


class RedisBlobs:
    """Each row one value: its features as packed little-endian float32 (40 or 512 bytes).
    arrive: one MGET (GET for a single key); matrix: np.frombuffer over the joined values."""

    MSET_PAIRS = 1000
    PIPELINE_COMMANDS = 100

    def __init__(self, dataset: Dataset, endpoints: dict[str, Any], table: str = TABLE) -> None:
        self.dataset = dataset
        self.redis = redis.Redis(host="127.0.0.1", port=endpoints["redis_blobs"])

    def arrive(self, keys: list[str]) -> list[bytes]:
        if len(keys) == 1:
            return [self.redis.get(keys[0])]
        return self.redis.mget(keys)

    def matrix(self, keys: list[str]) -> np.ndarray:
        values = self.arrive(keys)
        return np.frombuffer(b"".join(values), np.float32).reshape(len(keys), self.dataset.width)

    def create(self) -> None:
        pass

    def load(self, start: int, block: np.ndarray) -> None:
        packed = block.tobytes()
        size = self.dataset.row_bytes
        stop = start + len(block)
        pipe = self.redis.pipeline(transaction=False)
        for first in range(start, stop, self.MSET_PAIRS):
            last = min(stop, first + self.MSET_PAIRS)
            pipe.mset({str(i): packed[(i - start) * size:(i - start + 1) * size]
                       for i in range(first, last)})
            if len(pipe) == self.PIPELINE_COMMANDS:
                pipe.execute()
        pipe.execute()

    def close(self) -> None:
        self.redis.close()


class RedisHashes(RedisBlobs):
    """Feast-style: one hash per key, one field per feature column (f0..f9, or one `emb` field),
    each value the column's packed float32. arrive: HMGET of every field for each key, all keys
    pipelined: the commands packed by hiredis and written at once, then one reply per key read
    by redis-py's connection with its hiredis parser (redis-py's Pipeline object, with its
    per-command Python bookkeeping, took twice as long); matrix: np.frombuffer over the joined
    values. Loads are pipelined the same way."""

    PIPELINE_COMMANDS = 10000

    def __init__(self, dataset: Dataset, endpoints: dict[str, Any], table: str = TABLE) -> None:
        self.dataset = dataset
        self.redis = redis.Redis(host="127.0.0.1", port=endpoints["redis_hashes"])
        self.fields = dataset.redis_fields()
        self.connection = self.redis.connection_pool.get_connection()

    def _pipeline(self, commands: list[bytes]) -> list[Any]:
        self.connection.send_packed_command([b"".join(commands)], check_health=False)
        replies = [self.connection.read_response() for _ in commands]
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise reply
        return replies

    def arrive(self, keys: list[str]) -> list[list[bytes]]:
        if len(keys) == 1:
            return [self.redis.hmget(keys[0], self.fields)]
        fields = self.fields
        return self._pipeline([hiredis.pack_command(("HMGET", key, *fields)) for key in keys])

    def matrix(self, keys: list[str]) -> np.ndarray:
        values = itertools.chain.from_iterable(self.arrive(keys))
        return np.frombuffer(b"".join(values), np.float32).reshape(len(keys), self.dataset.width)

    def load(self, start: int, block: np.ndarray) -> None:
        packed = block.tobytes()
        size = self.dataset.row_bytes
        step = size // len(self.fields)
        commands = []
        for i in range(start, start + len(block)):
            row = (i - start) * size
            command = ["HSET", str(i)]
            for f, field in enumerate(self.fields):
                command += [field, packed[row + f * step:row + (f + 1) * step]]
            commands.append(hiredis.pack_command(tuple(command)))
            if len(commands) == self.PIPELINE_COMMANDS:
                self._pipeline(commands)
                commands = []
        if commands:
            self._pipeline(commands)

    def close(self) -> None:
        self.redis.connection_pool.release(self.connection)
        super().close()


# Label (as reported) -> client class. Redis MGET is the baseline every ratio is taken against.
SYSTEMS = {
    "quiver HTTP": QuiverHttp,
    "quiver Flight": QuiverFlight,
    "quiver shm": QuiverShm,
    "redis MGET": RedisBlobs,
    "redis HMGET": RedisHashes,
    "quiver embedded": QuiverEmbedded,
}
BASELINE = "redis MGET"
# Systems that are a server the suite starts (the embedded engine lives in the client process).
SERVED = [s for s in SYSTEMS if s != "quiver embedded"]
# Served systems that read what another loaded (quiver shm maps the table quiver HTTP wrote).
READ_ONLY = ["quiver shm"]
