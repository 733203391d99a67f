"""Feast's own integration suite pointed at Quiver (scripts/feast-suite.sh, docs/feast.md).

Feast parametrizes its universal online-store tests by the FULL_REPO_CONFIGS_MODULE named in the
environment; this module is that module. It is imported by Feast's test tree (its `tests`
package), so it must not import ours: the real quiverd is started through tests/quiverd.py loaded
by file path under another name. FEAST_SUITE_STORE_MODE picks the store each test environment
gets: "http" (default; a quiverd of its own), "embedded" (a data directory of its own) or
"redis" (Feast's Redis online store on a redis-server of its own: the baseline).

FEAST_SUITE_STORE_AS renames the store in Feast's parametrization (default "quiver"): Feast marks
some generic tests (entity TTL, the event-time check of write_to_online_store, clean-up after a
feature view is deleted) `only=["redis"]`; naming Quiver "redis" runs them against it too.
"""

import importlib.util
import os
import pathlib
import shutil
import tempfile

from tests.universal.feature_repos.universal.data_sources.file import FileDataSourceCreator
from tests.universal.feature_repos.universal.online_store_creator import OnlineStoreCreator

_ROOT = pathlib.Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("quiver_tests_quiverd", _ROOT / "tests" / "quiverd.py")
_quiverd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_quiverd)

STORE_TYPE = "quiver.feast.QuiverOnlineStore"


class QuiverServerCreator(OnlineStoreCreator):
    """A quiverd of its own on free loopback ports; Feast talks to it over HTTP."""

    def __init__(self, project_name: str, **kwargs):
        super().__init__(project_name)
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="quiver-feast-suite-"))
        self.server = None

    def create_online_store(self) -> dict:
        self.server = _quiverd.Server(self.tmp)
        return {"type": STORE_TYPE, "url": self.server.url}

    def teardown(self):
        if self.server is not None:
            self.server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


class QuiverEmbeddedCreator(OnlineStoreCreator):
    """The engine embedded in the test process, on a data directory of its own."""

    def __init__(self, project_name: str, **kwargs):
        super().__init__(project_name)
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="quiver-feast-suite-"))

    def create_online_store(self) -> dict:
        return {"type": STORE_TYPE, "url": str(self.tmp / "data")}

    def teardown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


class RedisServerCreator(OnlineStoreCreator):
    """Feast's own Redis online store on a redis-server of its own: the baseline the same tests
    (and Feast's benchmark) run against."""

    def __init__(self, project_name: str, **kwargs):
        super().__init__(project_name)
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="quiver-feast-suite-"))
        self.process = None

    def create_online_store(self) -> dict:
        self.process, port = _quiverd.start_redis(self.tmp)
        return {"type": "redis", "connection_string": f"127.0.0.1:{port}"}

    def teardown(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


_AS = os.environ.get("FEAST_SUITE_STORE_AS", "quiver")
_CREATORS = {"http": QuiverServerCreator, "embedded": QuiverEmbeddedCreator,
             "redis": RedisServerCreator}
_creator = _CREATORS[os.environ.get("FEAST_SUITE_STORE_MODE", "http")]

AVAILABLE_OFFLINE_STORES = [("local", FileDataSourceCreator)]
AVAILABLE_ONLINE_STORES = {_AS: ({"type": STORE_TYPE}, _creator)}
