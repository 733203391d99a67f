"""Fixtures that run the real quiverd binary on free loopback ports."""

import pytest

from quiverd import QUIVERD, ROOT, Server, free_port  # noqa: F401 - used by the tests

@pytest.fixture
def start_server(tmp_path):
    """Starts quiverd with extra flags; every server is stopped (and must exit 0) at the end."""
    servers = []

    def start(*args: str) -> Server:
        server = Server(tmp_path, *args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        code = server.stop()
        assert code == 0, f"quiverd exited {code}:\n{server.log()}"


@pytest.fixture
def server(start_server) -> Server:
    return start_server()
