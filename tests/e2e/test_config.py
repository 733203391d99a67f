"""quiverd settings: YAML file, then QUIVER_* environment variables, then flags."""

import os
import signal
import subprocess
import time

import pytest
import requests

import quiverd
from quiverd import QUIVERD, free_ports


def run_until_healthy(args, env_extra, port):
    """Starts quiverd, waits until it answers on `port`, stops it; returns its stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUIVER_")}
    if "--config" not in args:  # not the default 8081, which another process may hold
        env["QUIVER_FLIGHT_PORT"] = "0"
    env["QUIVER_RESP_PORT"] = "0"  # not the default 6380
    env.update(env_extra)
    process = subprocess.Popen([str(QUIVERD), *args], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "quiverd did not answer on the expected port"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    return stderr


def test_precedence_file_then_environment_then_flags(tmp_path):
    file_port, env_port, flag_port, flight_port = free_ports(4)
    config = tmp_path / "quiver.yaml"
    config.write_text(f"http:\n  port: {file_port}\n  max_connections: 7\nlog:\n  level: debug\n"
                      f"flight:\n  port: {flight_port}\n"
                      f"data_dir: {tmp_path / 'from-file'}\n")
    base = ["--config", str(config)]
    stderr = run_until_healthy(base, {}, file_port)
    assert f"http=127.0.0.1:{file_port}" in stderr
    assert f"flight=127.0.0.1:{flight_port}" in stderr
    assert (tmp_path / "from-file").is_dir()
    stderr = run_until_healthy(base, {"QUIVER_HTTP_PORT": str(env_port)}, env_port)
    assert f"http=127.0.0.1:{env_port}" in stderr
    stderr = run_until_healthy(base + ["--http-port", str(flag_port)],
                               {"QUIVER_HTTP_PORT": str(env_port),
                                "QUIVER_DATA_DIR": str(tmp_path / "from-env")}, flag_port)
    assert f"http=127.0.0.1:{flag_port}" in stderr
    assert f"data_dir={tmp_path / 'from-env'}" in stderr
    # A client-side variable is left alone.
    run_until_healthy(["--http-port", str(flag_port), "--data-dir", str(tmp_path / "d")],
                      {"QUIVER_URL": "http://elsewhere"}, flag_port)


@pytest.mark.parametrize("yaml_text, env, message", [
    ("http:\n  prot: 8080\n", {}, "unknown key 'http.prot'"),
    ("nope: 1\n", {}, "unknown key 'nope'"),
    ("http:\n  port: eighty\n", {}, "http.port: 'eighty' is not an integer"),
    ("http:\n  port: [1, 2]\n", {}, "http.port: expected a single value"),
    ("server:\n  threads: 0\n", {}, "server.threads: 0 is outside 1..256"),
    ("log:\n  level: loud\n", {}, "log.level: 'loud' is not one of"),
    ("http: [1, 2\n", {}, "not valid YAML"),
    ("- a\n- b\n", {}, "must be a mapping"),
    ("", {"QUIVER_HTTP_PORT": "70000"}, "QUIVER_HTTP_PORT: 70000 is outside 0..65535"),
    ("", {"QUIVER_NOPE": "1"}, "unknown environment variable QUIVER_NOPE"),
])
def test_bad_settings_stop_the_start(tmp_path, yaml_text, env, message):
    config = tmp_path / "quiver.yaml"
    config.write_text(yaml_text)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QUIVER_")}
    full_env.update(env)
    result = subprocess.run([str(QUIVERD), "--config", str(config)], env=full_env,
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_missing_config_file(tmp_path):
    result = subprocess.run([str(QUIVERD), "--config", str(tmp_path / "none.yaml")],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_free_ports_are_distinct():
    for _ in range(50):
        ports = free_ports(3)
        assert len(set(ports)) == 3


def test_server_helper_starts_again_when_its_port_is_taken(tmp_path, monkeypatch):
    """The helper's retry: a port taken between choosing it and quiverd's bind (here the same port
    handed to two front ends) makes it start quiverd again on other ports."""
    calls = []
    real = quiverd.free_ports

    def colliding(count):
        calls.append(count)
        ports = real(count)
        return [ports[0]] * count if len(calls) == 1 else ports

    monkeypatch.setattr(quiverd, "free_ports", colliding)
    server = quiverd.Server(tmp_path)
    try:
        assert len(calls) == 2
        assert requests.get(server.url + "/health", timeout=5).status_code == 200
    finally:
        assert server.stop() == 0
