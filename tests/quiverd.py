"""The real quiverd binary on free loopback ports, for tests: Server, free_port."""

import os
import pathlib
import resource
import signal
import socket
import subprocess
import time

import requests

ROOT = pathlib.Path(__file__).resolve().parents[1]
QUIVERD = pathlib.Path(os.environ.get("QUIVERD", ROOT / "build" / "quiverd"))


def _asan_build() -> bool:
    """Whether QUIVERD is built with AddressSanitizer (it links libasan): its quarantine of freed
    memory and its shadow memory make resident-memory figures meaningless."""
    try:
        dynamic = subprocess.run(["readelf", "-d", str(QUIVERD)], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "libasan" in dynamic


ASAN = _asan_build()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running quiverd: .url, .port, .flight_url, .flight_port, .resp_port, .data_dir, .stop() -> exit
    status, .log() -> stderr so far. Each server gets its own data directory under tmp_path
    unless `data_dir` names one (to restart on the same data). `file_size_limit`: RLIMIT_FSIZE in
    bytes, so that writes past it fail with EFBIG like a full disk (lift_file_size_limit() ends
    it)."""

    def __init__(self, tmp_path: pathlib.Path, *args: str, data_dir: pathlib.Path | None = None,
                 file_size_limit: int | None = None):
        self.port = free_port()
        self.flight_port = free_port()
        self.resp_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.flight_url = f"grpc://127.0.0.1:{self.flight_port}"
        self.data_dir = data_dir or tmp_path / f"data-{self.port}"
        self.stderr_path = tmp_path / f"quiverd-{self.port}.log"
        self._stderr = open(self.stderr_path, "wb")
        self.process = subprocess.Popen(
            [str(QUIVERD), "--http-port", str(self.port), "--flight-port", str(self.flight_port),
             "--resp-port", str(self.resp_port),
             "--data-dir", str(self.data_dir), *args],
            stderr=self._stderr,
            preexec_fn=None if file_size_limit is None else lambda: resource.setrlimit(
                resource.RLIMIT_FSIZE, (file_size_limit, resource.RLIM_INFINITY)),
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"quiverd did not start:\n{self.log()}")
            time.sleep(0.02)

    def lift_file_size_limit(self) -> None:
        resource.prlimit(self.process.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    def log(self) -> str:
        return self.stderr_path.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=20)
        self._stderr.close()
        return code
