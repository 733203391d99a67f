"""A local S3-compatible server for tests and benchmarks: moto's server (pinned in
requirements.txt) on a free loopback port, with a TCP proxy in front of it that can refuse
connections (`proxy.down()` / `proxy.up()`) to play an object store that becomes unreachable.

    with S3Server() as s3:
        uri = s3.uri("bucket/prefix")   # s3://bucket/prefix?endpoint_override=...&...

Credentials: any key works (moto does not check them); the environment of `env()` sets one."""

import os
import pathlib
import socket
import subprocess
import sys
import threading
import time

from quiverd import free_port

PYTHON = pathlib.Path(sys.executable)


def s3_env() -> dict:
    env = dict(os.environ)
    env.update({"AWS_ACCESS_KEY_ID": "quiver-test", "AWS_SECRET_ACCESS_KEY": "quiver-test",
                "AWS_EC2_METADATA_DISABLED": "true", "AWS_REGION": "us-east-1"})
    return env


class Proxy:
    """Forwards loopback TCP connections from .port to `target`; down() refuses new ones and cuts
    the open ones, up() accepts again (on the same port)."""

    def __init__(self, target: int):
        self.target = target
        self.port = free_port()
        self._listener = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._open.clear()

    def _accept(self, listener) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class S3Server:
    def __init__(self, log_path: pathlib.Path | None = None, check_credentials: bool = False):
        """`check_credentials`: every request must be signed with a key moto's IAM knows (none
        is made: every key is wrong)."""
        self.port = free_port()
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        env = s3_env()
        if check_credentials:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
        self.process = subprocess.Popen(
            [str(PYTHON), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log, stderr=self._log, env=env)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError("the S3 server (moto) did not start")
                time.sleep(0.05)
        self.proxy = Proxy(self.port)

    def uri(self, path: str, through_proxy: bool = False) -> str:
        port = self.proxy.port if through_proxy else self.port
        return (f"s3://{path}?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
                "&allow_bucket_creation=true")

    def filesystem(self):
        """(pyarrow S3FileSystem, None) to look at the bucket directly."""
        import pyarrow.fs
        return pyarrow.fs.S3FileSystem(endpoint_override=f"127.0.0.1:{self.port}", scheme="http",
                                       region="us-east-1", access_key="quiver-test",
                                       secret_key="quiver-test", allow_bucket_creation=True)

    def close(self) -> None:
        if getattr(self, "proxy", None) is not None:
            self.proxy.down()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
