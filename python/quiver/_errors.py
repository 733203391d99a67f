"""Quiver's exceptions: one class per kind of failure, the same from every backend.

Every error carries ``code``, the server's machine code (``"NOT_FOUND"``, ``"INVALID_ARGUMENT"``,
...), and ``message``, the engine's text, which is identical whether the engine runs embedded or
behind HTTP or Arrow Flight.
"""

from __future__ import annotations

import builtins


class QuiverError(Exception):
    """Base class of every error Quiver raises."""

    def __init__(self, message: str, code: str = "INTERNAL") -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message


class TableNotFound(QuiverError, LookupError):
    """The named table does not exist."""


class TableExists(QuiverError):
    """``create_table`` of a name that is taken."""


class InvalidRequest(QuiverError, ValueError):
    """The request is malformed: wrong key type, null key, bad argument, ..."""


class SchemaError(InvalidRequest):
    """A schema is invalid, or data does not fit the table's schema."""


class ColumnNotFound(SchemaError, LookupError):
    """A named column is not in the table."""


class LimitExceeded(InvalidRequest):
    """A key, value or request is over a configured size limit."""


class OutOfMemory(QuiverError, MemoryError):
    """The engine could not allocate memory, or a memory limit was reached."""


class Unsupported(QuiverError):
    """The operation is not implemented by this server or backend."""


class ReadOnly(QuiverError):
    """A change sent to a node that only reads: a follower of another node's backups."""


class ServerError(QuiverError):
    """An internal or operating-system error on the server side."""


class ConnectionError(QuiverError, builtins.ConnectionError):  # noqa: A001 - the API's name
    """The server cannot be reached, refused the connection or went away."""


_BY_CODE: dict[str, type[QuiverError]] = {
    "ALREADY_EXISTS": TableExists,
    "INVALID_ARGUMENT": InvalidRequest,
    "BAD_REQUEST": InvalidRequest,
    "LENGTH_REQUIRED": InvalidRequest,
    "METHOD_NOT_ALLOWED": InvalidRequest,
    "NOT_ACCEPTABLE": InvalidRequest,
    "UNSUPPORTED_MEDIA_TYPE": InvalidRequest,
    "LIMIT_EXCEEDED": LimitExceeded,
    "PAYLOAD_TOO_LARGE": LimitExceeded,
    "HEADERS_TOO_LARGE": LimitExceeded,
    "OUT_OF_MEMORY": OutOfMemory,
    "NOT_IMPLEMENTED": Unsupported,
    "READ_ONLY": ReadOnly,
    "UNAVAILABLE": ConnectionError,
    "TOO_MANY_CONNECTIONS": ConnectionError,
}


def error_from_code(code: str, message: str, *, schema_op: bool = False) -> QuiverError:
    """The exception for a machine code and message. ``schema_op``: the request defined a schema,
    so an invalid argument is a SchemaError."""
    if code == "NOT_FOUND":
        cls: type[QuiverError] = ColumnNotFound if "has no column" in message else TableNotFound
    elif code == "INVALID_ARGUMENT" and schema_op:
        cls = SchemaError
    else:
        cls = _BY_CODE.get(code, ServerError)
    return cls(message, code)
