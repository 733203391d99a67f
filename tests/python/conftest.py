"""Fixtures: one quiverd for the session, and the same API test run against every backend."""

import uuid

import quiver.aio  # noqa: F401 - quiver.aio.connect in the tests

import pytest

import quiver
from quiverd import Server

BACKENDS = ["embedded", "http", "flight"]


@pytest.fixture(scope="session")
def quiverd(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("quiverd"))
    yield server
    code = server.stop()
    assert code == 0, f"quiverd exited {code}:\n{server.log()}"


def open_backend(kind: str, server: Server) -> quiver.Client:
    if kind == "embedded":
        return quiver.open()
    return quiver.connect(server.url if kind == "http" else server.flight_url)


@pytest.fixture(params=BACKENDS)
def db(request, quiverd):
    client = open_backend(request.param, quiverd)
    yield client
    client.close()


@pytest.fixture
def all_dbs(quiverd):
    """One client of each backend (a separate embedded engine; HTTP and Flight share quiverd)."""
    clients = {kind: open_backend(kind, quiverd) for kind in BACKENDS}
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture
def name():
    """A table name no other test uses (the server is shared by the session)."""
    return "t_" + uuid.uuid4().hex[:12]

