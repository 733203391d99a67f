"""Makes tests/quiverd.py (the quiverd process helper) importable from every test directory, and
shares the start_server fixture."""

import importlib.util
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from quiverd import Server  # noqa: E402

# tests/feast_store runs in .venv-feast (Feast's pins conflict with .venv's:
# requirements-feast.txt); `make test-python` runs it there.
collect_ignore = [] if importlib.util.find_spec("feast") else ["feast_store"]


def _servers(tmp_path, must_exit_0: bool):
    servers = []

    def start(*args: str, **options) -> Server:
        server = Server(tmp_path, *args, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if must_exit_0:
            code = server.stop()
            assert code == 0, f"quiverd exited {code}:\n{server.log()}"
        else:
            if server.process.poll() is None:
                server.process.kill()
            server.process.wait()


@pytest.fixture
def start_server(tmp_path):
    """Starts quiverd with extra flags; every server is stopped (and must exit 0) at the end."""
    yield from _servers(tmp_path, must_exit_0=True)


@pytest.fixture
def spawn_server(tmp_path):
    """Starts quiverd for a test that may kill it; whatever still runs at the end is killed."""
    yield from _servers(tmp_path, must_exit_0=False)
