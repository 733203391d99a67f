"""The real quiverd binary on free loopback ports, for tests: Server, free_port, free_ports,
rss_bytes, peak_rss_bytes."""

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


def _status_bytes(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field}")


def rss_bytes(pid: int) -> int:
    """A process's resident memory (VmRSS) in bytes."""
    return _status_bytes(pid, "VmRSS")


def peak_rss_bytes(pid: int) -> int:
    """A process's peak resident memory since it started (VmHWM) in bytes."""
    return _status_bytes(pid, "VmHWM")


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports: every socket stays bound until all are chosen, so the
    kernel cannot hand out one port twice (separate free_port() calls can)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def start_redis(directory: pathlib.Path) -> tuple[subprocess.Popen, int]:
    """A memory-only redis-server (Debian's) on a free loopback port, answering PING: (process,
    port). The baseline the Feast tests and benchmarks compare with; the caller terminates it."""
    import redis

    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", str(directory)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port).ping()
            return process, port
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(f"redis-server did not start on port {port}") from None
            time.sleep(0.05)


# What quiverd prints when a port it was given is taken (by another process between free_ports()
# and its bind): Server then starts it again on other ports.
_PORT_TAKEN = ("Address already in use", "address already in use", "each front end needs a port")


class Server:
    """A running quiverd: .url, .port, .flight_url, .flight_port, .resp_port, .data_dir, .stop() -> exit
    status, .log() -> stderr so far. Each server gets its own data directory under tmp_path
    unless `data_dir` names one (to restart on the same data). `file_size_limit`: RLIMIT_FSIZE in
    bytes, so that writes past it fail with EFBIG like a full disk (lift_file_size_limit() ends
    it). `nofile`: RLIMIT_NOFILE (soft and hard), as `ulimit -n` would set it. `start_timeout`:
    seconds to wait for /health (a restore of a large backup takes longer than the default)."""

    def __init__(self, tmp_path: pathlib.Path, *args: str, data_dir: pathlib.Path | None = None,
                 file_size_limit: int | None = None, nofile: int | None = None,
                 start_timeout: float = 10):
        self.start_timeout = start_timeout
        limits = {}
        if file_size_limit is not None:
            limits[resource.RLIMIT_FSIZE] = (file_size_limit, resource.RLIM_INFINITY)
        if nofile is not None:
            limits[resource.RLIMIT_NOFILE] = (nofile, nofile)
        for attempt in range(5):
            self._start(tmp_path, args, data_dir, limits)
            try:
                self._wait_healthy()
                return
            except RuntimeError as error:
                if attempt == 4 or not any(sign in str(error) for sign in _PORT_TAKEN):
                    raise

    def _start(self, tmp_path, args, data_dir, limits) -> None:
        self.port, self.flight_port, self.resp_port = free_ports(3)
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
            preexec_fn=None if not limits else lambda: [
                resource.setrlimit(which, value) for which, value in limits.items()],
        )

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                if self.process.poll() is None:
                    self.process.kill()
                self.process.wait()
                self._stderr.close()
                raise RuntimeError(f"quiverd did not start:\n{self.log()}")
            time.sleep(0.02)

    def metrics(self) -> dict[str, float]:
        """GET /metrics as {family name: value} (the last sample of each family)."""
        values = {}
        for line in requests.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line.startswith("quiver_") and " " in line:
                name, value = line.rsplit(" ", 1)
                values[name.split("{")[0]] = float(value)
        return values

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
