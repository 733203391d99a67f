"""Fixtures that run the real quiverd binary on free loopback ports (start_server: tests/conftest.py)."""

import pytest

from quiverd import Server


@pytest.fixture
def server(start_server) -> Server:
    return start_server()
