"""Makes tests/quiverd.py (the quiverd process helper) importable from every test directory, and
shares the start_server fixture."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from quiverd import Server  # noqa: E402


@pytest.fixture
def start_server(tmp_path):
    """Starts quiverd with extra flags; every server is stopped (and must exit 0) at the end."""
    servers = []

    def start(*args: str, **options) -> Server:
        server = Server(tmp_path, *args, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        code = server.stop()
        assert code == 0, f"quiverd exited {code}:\n{server.log()}"
