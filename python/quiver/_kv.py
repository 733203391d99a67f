"""The key-value store of an embedded engine (``quiver.open().kv``): Redis's commands, run in
this process through the same command table as quiverd's RESP server, so every edge case (TTL
cleared by an overwrite, ``KEEPTTL``, expiry in the past deleting the key, ``WRONGTYPE``, ...)
behaves as over the wire (docs/python.md, "Key-value"). Keys, values and fields may be ``str``
(UTF-8), ``bytes``, ``int`` or ``float``; values come back as ``bytes``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from . import _quiver
from ._errors import InvalidRequest, OutOfMemory, ServerError

Value = str | bytes | int | float


def _arg(value: Value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"a key-value argument must be str, bytes, int or float, not "
                        f"{type(value).__name__}")
    return repr(value).encode()


def _seconds(value: int | float) -> bytes:
    return _arg(int(value))


class KeyValue:
    """Strings and hashes with TTLs, Redis's semantics; every method may be called from any
    thread. ``execute(*args)`` runs any other command of docs/resp.md."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def execute(self, *args: Value) -> Any:
        """Runs one command; its reply (bytes, int, float, None, list, dict, or str for status
        replies such as "OK"). An error reply raises InvalidRequest (OutOfMemory for OOM,
        ServerError when the write-ahead log cannot be written)."""
        try:
            return self._engine.kv_call([_arg(a) for a in args])
        except _quiver.KvError as e:
            message = e.args[0]
            if message.startswith("OOM "):
                raise OutOfMemory(message, "OUT_OF_MEMORY") from None
            if message.startswith("MISCONF "):  # the write-ahead log cannot be written
                raise ServerError(message, "IO_ERROR") from None
            raise InvalidRequest(message, "INVALID_ARGUMENT") from None
        except _quiver.EngineError as e:
            raise InvalidRequest(e.args[1], e.args[0]) from None

    # --- strings ---------------------------------------------------------------------------

    def set(self, key: Value, value: Value, *, ex: float | None = None, px: int | None = None,
            exat: int | None = None, pxat: int | None = None, nx: bool = False,
            xx: bool = False, keepttl: bool = False, get: bool = False) -> Any:
        """SET: True when written (None when NX/XX prevented it); with ``get``, the old value."""
        args: list[Value] = ["SET", key, value]
        for name, option in (("EX", ex), ("PX", px), ("EXAT", exat), ("PXAT", pxat)):
            if option is not None:
                args += [name, _seconds(option)]
        args += [flag for flag, on in (("NX", nx), ("XX", xx), ("KEEPTTL", keepttl),
                                        ("GET", get)) if on]
        reply = self.execute(*args)
        return reply if get else (reply == "OK" or None)

    def get(self, key: Value) -> bytes | None:
        return self.execute("GET", key)

    def getdel(self, key: Value) -> bytes | None:
        return self.execute("GETDEL", key)

    def mget(self, keys: list[Value]) -> list[bytes | None]:
        return self.execute("MGET", *keys)

    def mset(self, mapping: Mapping[Value, Value]) -> bool:
        return self.execute("MSET", *[part for pair in mapping.items() for part in pair]) == "OK"

    def incr(self, key: Value, amount: int = 1) -> int:
        return self.execute("INCRBY", key, amount)

    def incrbyfloat(self, key: Value, amount: float) -> float:
        return float(self.execute("INCRBYFLOAT", key, amount))

    def append(self, key: Value, value: Value) -> int:
        return self.execute("APPEND", key, value)

    def strlen(self, key: Value) -> int:
        return self.execute("STRLEN", key)

    # --- keys ------------------------------------------------------------------------------

    def delete(self, *keys: Value) -> int:
        return self.execute("DEL", *keys)

    def exists(self, *keys: Value) -> int:
        return self.execute("EXISTS", *keys)

    def type(self, key: Value) -> str:
        return self.execute("TYPE", key)

    def expire(self, key: Value, seconds: float, *, nx: bool = False, xx: bool = False,
               gt: bool = False, lt: bool = False) -> bool:
        """EXPIRE: True when the TTL was set (a time not in the future deletes the key)."""
        flags = [f for f, on in (("NX", nx), ("XX", xx), ("GT", gt), ("LT", lt)) if on]
        return self.execute("EXPIRE", key, _seconds(seconds), *flags) == 1

    def pexpire(self, key: Value, milliseconds: int) -> bool:
        return self.execute("PEXPIRE", key, int(milliseconds)) == 1

    def expireat(self, key: Value, unix_seconds: int) -> bool:
        return self.execute("EXPIREAT", key, int(unix_seconds)) == 1

    def persist(self, key: Value) -> bool:
        return self.execute("PERSIST", key) == 1

    def ttl(self, key: Value) -> int:
        """Seconds left; -1 for a key without TTL, -2 for a missing key."""
        return self.execute("TTL", key)

    def pttl(self, key: Value) -> int:
        return self.execute("PTTL", key)

    def rename(self, key: Value, new: Value) -> bool:
        return self.execute("RENAME", key, new) == "OK"

    def keys(self, pattern: Value = "*") -> list[bytes]:
        return self.execute("KEYS", pattern)

    def scan_iter(self, match: Value = "*", count: int = 100) -> Iterator[bytes]:
        """Every key matching ``match`` (SCAN's guarantee: keys present throughout come at
        least once)."""
        cursor = b"0"
        while True:
            cursor, keys = self.execute("SCAN", cursor, "MATCH", match, "COUNT", count)
            yield from keys
            if cursor == b"0":
                return

    def dbsize(self) -> int:
        return self.execute("DBSIZE")

    def flushall(self) -> bool:
        return self.execute("FLUSHALL") == "OK"

    # --- hashes ----------------------------------------------------------------------------

    def hset(self, key: Value, field: Value | None = None, value: Value | None = None, *,
             mapping: Mapping[Value, Value] | None = None) -> int:
        """HSET: the number of fields added."""
        pairs: list[Value] = [] if field is None else [field, value]  # type: ignore[list-item]
        for item in (mapping or {}).items():
            pairs += item
        return self.execute("HSET", key, *pairs)

    def hget(self, key: Value, field: Value) -> bytes | None:
        return self.execute("HGET", key, field)

    def hmget(self, key: Value, fields: list[Value]) -> list[bytes | None]:
        return self.execute("HMGET", key, *fields)

    def hgetall(self, key: Value) -> dict[bytes, bytes]:
        return self.execute("HGETALL", key)

    def hdel(self, key: Value, *fields: Value) -> int:
        return self.execute("HDEL", key, *fields)

    def hexists(self, key: Value, field: Value) -> bool:
        return self.execute("HEXISTS", key, field) == 1

    def hlen(self, key: Value) -> int:
        return self.execute("HLEN", key)

    def hincrby(self, key: Value, field: Value, amount: int = 1) -> int:
        return self.execute("HINCRBY", key, field, amount)

    # --- memory ----------------------------------------------------------------------------

    def config_set(self, name: str, value: Value) -> bool:
        """CONFIG SET of ``maxmemory``, ``maxmemory-policy`` or ``maxmemory-samples``."""
        return self.execute("CONFIG", "SET", name, value) == "OK"

    def info(self) -> dict[str, Any]:
        """keys, keys_with_ttl, expired, evicted, used_memory, maxmemory, maxmemory_policy."""
        return self._engine.kv_info()
