"""Hostile clients against the real quiverd (issue 21): each case asserts that the server is
still up and the data intact afterwards, and for the memory cases that its peak resident memory
stayed within a stated bound."""

import os
import socket
import time

import pyarrow as pa
import pytest
import redis
import requests

from hostile import decode_bombs, send_unfinished_values
from quiverd import ASAN, peak_rss_bytes, rss_bytes

SCHEMA = {
    "key": "id",
    "columns": {
        "id": {"dtype": "utf8", "nullable": False},
        "name": {"dtype": "utf8"},
        "score": {"dtype": "float64"},
    },
}


def make_table(server, name="t"):
    response = requests.put(f"{server.url}/api/v1/table/{name}", json=SCHEMA)
    assert response.status_code == 201, response.text
    response = requests.put(f"{server.url}/api/v1/table/{name}/write",
                            json={"columns": {"id": ["a", "b"], "name": ["x", "y"],
                                              "score": [1.5, 2.5]}})
    assert response.status_code == 200, response.text


def assert_intact(server, name="t"):
    """The server answers, and the rows make_table wrote are there."""
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
    response = requests.post(f"{server.url}/api/v1/table/{name}/fetch",
                             json={"keys": ["a", "b"]}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["columns"]["score"] == [1.5, 2.5]


def raw_request(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Sends `data` on a fresh connection and reads until the server closes it or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        chunks = []
        try:
            while chunk := conn.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and b"Connection: close" not in chunks[0]:
                    break
        except (socket.timeout, ConnectionResetError):
            pass
        return b"".join(chunks)


# --- 1. exceptions on the request path -------------------------------------------------------

@pytest.mark.parametrize("size", [65_535, 70_000, 200_000])
def test_huge_chunked_trailer_is_refused_not_fatal(server, size):
    make_table(server)
    request = (b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"0\r\nX-T: " + b"t" * size + b"\r\n\r\n")
    answer = raw_request(server.port, request)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert_intact(server)


def test_huge_header_is_refused_not_fatal(server):
    make_table(server)
    answer = raw_request(server.port, b"GET /health HTTP/1.1\r\nX-Big: " + b"v" * 65_534 +
                         b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert_intact(server)


def test_transfer_codings_other_than_chunked_are_refused(server):
    make_table(server)
    body = b'{"keys": ["a"]}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    for coding in [b"gzip, chunked", b"deflate", b"chunked, chunked"]:
        answer = raw_request(server.port,
                             b"POST /api/v1/table/t/fetch HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Type: application/json\r\nTransfer-Encoding: " + coding +
                             b"\r\n\r\n" + chunked)
        assert answer.startswith(b"HTTP/1.1 501") or answer.startswith(b"HTTP/1.1 400"), \
            (coding, answer[:300])
    answer = raw_request(server.port,
                         b"POST /api/v1/table/t/fetch HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
                         chunked)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert_intact(server)


def test_echoed_names_are_cut(server):
    make_table(server)
    name = "n" * 5_000_000
    response = requests.post(f"{server.url}/api/v1/table/t/fetch",
                             json={"keys": ["a"], "columns": [name]})
    assert response.status_code == 404
    assert len(response.content) < 2048, len(response.content)
    assert "bytes)" in response.json()["error"]
    response = requests.get(f"{server.url}/api/v1/table/{'q' * 30_000}/schema")
    assert response.status_code in (400, 404)
    assert len(response.content) < 2048
    assert_intact(server)


# --- 6. descriptors and connection floods ----------------------------------------------------

def _open_idle(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sockets.append(socket.create_connection(("127.0.0.1", port), timeout=10))
    return sockets


def test_idle_flood_under_a_low_descriptor_limit(start_server):
    # ulimit -n 1024, then 1,100 idle connections to each of HTTP and RESP: clients still get in,
    # and no log flood.
    server = start_server(nofile=1024)
    make_table(server)
    log = server.log()
    assert "connection limits cut to fit the descriptor limit" in log
    held = []
    try:
        held += _open_idle(server.port, 1100)
        time.sleep(0.3)
        assert_intact(server)
        held += _open_idle(server.resp_port, 1100)
        time.sleep(0.3)
        assert redis.Redis(port=server.resp_port, socket_timeout=10).ping()
        assert_intact(server)
    finally:
        for s in held:
            s.close()
    lines = server.log().count("\n")
    assert lines < 100, server.log()[-2000:]
    assert_intact(server)


def test_accept_backs_off_when_descriptors_run_out(start_server):
    # Descriptors used up by Flight connections (which quiverd does not limit): the HTTP and RESP
    # accept loops fail with EMFILE, back off and log at most a line a second each; once the
    # descriptors are free again, clients get in.
    server = start_server(nofile=300)
    make_table(server)
    held = []
    try:
        for _ in range(400):
            try:
                held.append(socket.create_connection(("127.0.0.1", server.flight_port), timeout=2))
                held[-1].sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            except OSError:
                break
        # gRPC accepts on its own threads, maybe later than HTTP and RESP would: wait until the
        # Flight connections really hold every descriptor, so that the accepts below must fail.
        deadline = time.monotonic() + 10
        while len(os.listdir(f"/proc/{server.process.pid}/fd")) < 299 and \
                "File descriptor limit reached" not in server.log():
            assert time.monotonic() < deadline, "the Flight connections did not use up the descriptors"
            time.sleep(0.05)
        for _ in range(50):
            try:
                held.append(socket.create_connection(("127.0.0.1", server.port), timeout=2))
                held.append(socket.create_connection(("127.0.0.1", server.resp_port), timeout=2))
            except OSError:
                break
        time.sleep(2)
        cpu_before = sum(_cpu_seconds(server.process.pid))
        time.sleep(1)
        cpu_used = sum(_cpu_seconds(server.process.pid)) - cpu_before
    finally:
        for s in held:
            s.close()
    log = server.log()
    assert 0 < log.count("accept failed") < 20, log[-3000:]
    assert cpu_used < 0.5, f"{cpu_used:.2f} s of CPU in 1 s while out of descriptors"
    deadline = time.monotonic() + 10
    while True:
        try:
            assert_intact(server)
            break
        except (requests.RequestException, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _cpu_seconds(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = 100.0
    return int(fields[11]) / ticks, int(fields[12]) / ticks


# --- smaller ones ----------------------------------------------------------------------------

def test_sizes_are_read_the_redis_way_everywhere(start_server):
    server = start_server("--maxmemory", "20m")
    client = redis.Redis(port=server.resp_port)
    assert client.config_get("maxmemory")["maxmemory"] == "20000000"
    client.config_set("maxmemory", "20mb")
    assert client.config_get("maxmemory")["maxmemory"] == str(20 << 20)
    server2 = start_server("--maxmemory", "20mb")
    assert redis.Redis(port=server2.resp_port).config_get("maxmemory")["maxmemory"] == \
        str(20 << 20)


# --- 2. deep JSON ----------------------------------------------------------------------------

DEEP = 60_000


def deep(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


def test_deeply_nested_json_is_refused_everywhere(server):
    import pyarrow.flight as flight
    make_table(server)
    url = f"{server.url}/api/v1/table/t"
    headers = {"Content-Type": "application/json"}
    for path, body, method in [
        ("/fetch", '{"keys": ' + deep() + "}", requests.post),
        ("/write", '{"columns": {"name": ' + deep() + "}}", requests.put),
        ("/delete", '{"keys": ' + deep() + "}", requests.post),
        ("", '{"key": "id", "columns": ' + deep() + "}", requests.put),
    ]:
        response = method(url + path, data=body, headers=headers)
        assert response.status_code == 400, (path, response.text[:300])
        assert "levels deep" in response.json()["error"], response.text[:300]
    response = requests.post(f"{server.url}/api/v1/admin/snapshot", data=deep(), headers=headers)
    assert response.status_code == 400 and "levels deep" in response.text
    client = flight.connect(server.flight_url)
    ticket = ('{"table": "t", "keys": ' + deep() + "}").encode()
    with pytest.raises(pa.ArrowInvalid) as error:
        client.do_get(flight.Ticket(ticket)).read_all()
    assert "levels deep" in str(error.value)
    with pytest.raises(pa.ArrowInvalid) as error:
        client.get_flight_info(flight.FlightDescriptor.for_command(ticket))
    assert "levels deep" in str(error.value) and "descriptor" in str(error.value)
    with pytest.raises(pa.ArrowInvalid) as error:
        list(client.do_action(flight.Action("create_table", deep().encode())))
    assert "levels deep" in str(error.value)
    # 64 levels are fine where the shape allows nesting at all (a list column's values).
    assert_intact(server)


def test_deep_yaml_config_is_refused(tmp_path):
    import subprocess
    from quiverd import QUIVERD
    config = tmp_path / "deep.yaml"
    config.write_text("server: " + deep(100_000) + "\n")
    result = subprocess.run([str(QUIVERD), "--config", str(config)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2, result.stderr[-500:]
    assert "config" in result.stderr


# --- 3. huge schemas -------------------------------------------------------------------------

def test_schema_with_100k_columns_is_refused_at_once(server):
    import pyarrow.flight as flight
    columns = {"id": {"dtype": "utf8", "nullable": False}}
    columns.update({f"c{i:06d}": {"dtype": "float64"} for i in range(100_000)})
    body = {"key": "id", "columns": columns}
    started = time.monotonic()
    response = requests.put(f"{server.url}/api/v1/table/wide", json=body)
    elapsed = time.monotonic() - started
    assert response.status_code == 413, response.text[:300]
    assert "at most 4096 columns" in response.json()["error"]
    client = flight.connect(server.flight_url)
    started = time.monotonic()
    import json
    with pytest.raises(pa.ArrowInvalid) as error:
        list(client.do_action(flight.Action(
            "create_table", json.dumps({"table": "wide", "schema": body}).encode())))
    elapsed = max(elapsed, time.monotonic() - started)
    assert "members" in str(error.value)
    # Sending 3 MB twice over loopback and refusing it: well under a second, not a minute.
    assert elapsed < 2, elapsed
    assert requests.get(f"{server.url}/api/v1/table/wide/schema").status_code == 404
    # 4,096 columns are accepted.
    columns = dict(list(columns.items())[:4096])
    response = requests.put(f"{server.url}/api/v1/table/wide", json={"key": "id",
                                                                     "columns": columns})
    assert response.status_code == 201, response.text[:300]


def test_unknown_time_zone_is_refused(server):
    for zone, status in [("Bogus/Zone", 400), ("../../etc/passwd", 400), ("Europe/Paris", 201),
                         ("+02:00", 201), ("UTC", 201)]:
        schema = {"key": "id", "columns": {"id": {"dtype": "utf8", "nullable": False},
                                           "at": {"dtype": f"timestamp[ms, tz={zone}]"}}}
        name = "tz" + str(abs(hash(zone)))
        response = requests.put(f"{server.url}/api/v1/table/{name}", json=schema)
        assert response.status_code == status, (zone, response.text)
        if status == 400:
            assert "time zone" in response.json()["error"]


# --- 7. missing files ------------------------------------------------------------------------

def _filled_data_dir(start_server):
    server = start_server("--wal-segment-bytes", "4096", "--snapshot-wal-bytes", "0",
                          "--snapshot-interval", "0")
    make_table(server)
    for batch in range(20):
        response = requests.put(f"{server.url}/api/v1/table/t/write", json={"columns": {
            "id": [f"k{batch}_{i}" for i in range(30)], "score": [float(batch)] * 30}})
        assert response.status_code == 200
        if batch == 9:
            assert requests.post(f"{server.url}/api/v1/admin/snapshot", json={}).ok
    assert server.stop() == 0
    return server.data_dir


def _start_on(data_dir, *flags):
    import subprocess
    from quiverd import QUIVERD, free_ports
    http, flight, resp = free_ports(3)
    return subprocess.Popen([str(QUIVERD), "--data-dir", str(data_dir), "--http-port", str(http),
                             "--flight-port", str(flight), "--resp-port", str(resp), *flags],
                            stderr=subprocess.PIPE, text=True), http


@pytest.mark.parametrize("remove", ["catalog", "middle segment", "newest segment",
                                    "every segment"])
def test_missing_files_stop_the_start(start_server, remove):
    data_dir = _filled_data_dir(start_server)
    segments = sorted((data_dir / "wal").iterdir())
    if remove == "catalog":
        (data_dir / "catalog").unlink()
    elif remove == "middle segment":
        segments[len(segments) // 2].unlink()
    elif remove == "newest segment":
        segments[-1].unlink()
    else:
        for segment in segments:
            segment.unlink()
    before = sorted(p.name for p in data_dir.rglob("*") if p.name != "LOCK")
    process, _ = _start_on(data_dir)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1, stderr
    assert "cannot start" in stderr and ("catalog" in stderr or "write-ahead log" in stderr), stderr
    assert sorted(p.name for p in data_dir.rglob("*") if p.name != "LOCK") == before, \
        "a refused start deleted files"
    # The operator accepts the loss: the server starts with what is there, and the next start
    # needs no flag.
    process, port = _start_on(data_dir, "--accept-data-loss")
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.05)
    finally:
        process.terminate()
        process.communicate(timeout=20)
    assert process.returncode == 0
    process, _ = _start_on(data_dir)
    time.sleep(1)
    assert process.poll() is None
    process.terminate()
    process.communicate(timeout=20)


# --- 4. bodies that decode to gigabytes --------------------------------------------------------

@pytest.mark.parametrize("flags, status, bound_mib", [
    (("--max-decode-bytes", "64mb"), 413, 64),
    (("--maxmemory", "64mb"), 507, 64),
])
def test_small_bodies_that_decode_to_gigabytes_are_refused_while_decoding(
        start_server, flags, status, bound_mib):
    server = start_server(*flags)
    make_table(server)
    before = rss_bytes(server.process.pid)
    for content_type, body in decode_bombs().values():
        response = requests.put(f"{server.url}/api/v1/table/t/write", data=body,
                                headers={"Content-Type": content_type})
        assert response.status_code == status, response.text
        assert "decod" in response.json()["error"]
    if not ASAN:
        peak = peak_rss_bytes(server.process.pid)
        # The decode budget, plus the allocator's and Arrow's working memory.
        assert peak - before < (bound_mib + 48) << 20, (before >> 20, peak >> 20)
    assert_intact(server)
    # Nothing reached the log: a restart holds the same rows.
    assert server.stop() == 0
    again = start_server(data_dir=server.data_dir)
    assert_intact(again)


# --- 5. RESP buffers ---------------------------------------------------------------------------

def _read_exactly(sock, count: int, timeout: float = 30) -> int:
    sock.settimeout(timeout)
    got = 0
    while got < count:
        chunk = sock.recv(min(1 << 20, count - got))
        if not chunk:
            break
        got += len(chunk)
    return got


def test_pipelined_replies_are_paused_not_piled_up(start_server):
    # SET bigv to 8 MiB, then GET bigv x 250 in one write, replies unread: the server stops
    # running the pipeline while its replies wait, so it holds one or two, not 2 GB.
    server = start_server()
    r = redis.Redis(port=server.resp_port)
    r.set("bigv", b"x" * (8 << 20))
    before = rss_bytes(server.process.pid)
    with socket.create_connection(("127.0.0.1", server.resp_port)) as conn:
        conn.sendall(b"GET bigv\r\n" * 250)
        time.sleep(1)
        during = rss_bytes(server.process.pid)
        assert r.ping()  # others are served meanwhile
        # The replies arrive, whole, once the client reads (the first ten are read here).
        reply = len(b"$%d\r\n" % (8 << 20)) + (8 << 20) + 2
        conn.settimeout(30)
        data = b""
        while len(data) < 10 * reply:
            data += conn.recv(1 << 20)
        assert data[:reply] == b"$%d\r\n" % (8 << 20) + b"x" * (8 << 20) + b"\r\n"
        assert data[9 * reply:10 * reply] == data[:reply]
    if not ASAN:
        assert during - before < 64 << 20, ((before >> 20), (during >> 20))
        assert peak_rss_bytes(server.process.pid) - before < 96 << 20
    assert r.get("bigv") == b"x" * (8 << 20)


def test_output_buffer_limits_close_the_client(start_server):
    server = start_server("--client-output-buffer-limit", "4mb 1mb 1")
    r = redis.Redis(port=server.resp_port)
    assert r.config_get("client-output-buffer-limit") == {
        "client-output-buffer-limit": f"normal {4 << 20} {1 << 20} 1"}
    r.set("big", b"x" * (5 << 20))
    r.set("mid", b"x" * (3 << 20))
    # One reply over the hard limit: the client is closed, others go on.
    with socket.create_connection(("127.0.0.1", server.resp_port)) as conn:
        conn.sendall(b"GET big\r\n")
        assert _read_exactly(conn, 6 << 20, timeout=10) < 5 << 20
    # Over the soft limit for more than a second, the client not reading: closed.
    with socket.create_connection(("127.0.0.1", server.resp_port)) as conn:
        # 30 MiB of replies, more than the kernel's socket buffers take: a 3 MiB write waits in
        # the server until the client is closed for it.
        conn.sendall(b"GET mid\r\n" * 10)
        time.sleep(2.5)
        assert _read_exactly(conn, 30 << 20, timeout=10) < 30 << 20
    assert "output buffer limit" in server.log() or "soft output limit" in server.log()
    r.config_set("client-output-buffer-limit", "normal 0 0 0")
    assert len(r.get("big")) == 5 << 20
    assert r.ping()


def test_query_buffer_limit_and_client_memory(start_server):
    # Six clients each sending 150 MiB of an unfinished value, under --maxmemory 64mb: client
    # memory (maxmemory-clients, 128 MiB by default under maxmemory) stays bounded; the biggest
    # clients are closed; INFO memory shows it.
    server = start_server("--maxmemory", "64mb")
    r = redis.Redis(port=server.resp_port)
    r.set("kept", "yes")
    before = rss_bytes(server.process.pid)
    conns, _ = send_unfinished_values(server.resp_port)
    time.sleep(0.5)
    info = r.info("memory")
    assert info["maxmemory_clients"] == 128 << 20
    assert info["clients_closed_for_memory"] >= 4, info
    if not ASAN:
        assert peak_rss_bytes(server.process.pid) - before < (128 + 48) << 20
    for conn in conns:
        conn.close()
    assert r.get("kept") == b"yes" and r.get("k") is None
    # A query buffer limit of its own: a client past it is closed.
    r.config_set("client-query-buffer-limit", "2mb")
    with socket.create_connection(("127.0.0.1", server.resp_port)) as conn:
        conn.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nq\r\n$%d\r\n" % (8 << 20))
        try:
            for _ in range(8):
                conn.sendall(b"y" * (1 << 20))
        except OSError:
            pass
        assert _read_exactly(conn, 10, timeout=10) == 0
    assert "query buffer" in server.log()
    assert r.get("q") is None and r.ping()


def test_http_bodies_count_as_client_memory(start_server):
    server = start_server("--maxmemory-clients", "8mb", "--max-request-bytes", "64mb")
    make_table(server)
    response = requests.put(f"{server.url}/api/v1/table/t/write", data=b"x" * (16 << 20),
                            headers={"Content-Type": "application/json"})
    assert response.status_code == 503, response.text[:300]
    assert response.json()["code"] == "CLIENT_MEMORY"
    metrics = requests.get(f"{server.url}/metrics").text
    assert f"quiver_client_memory_max_bytes {8 << 20}" in metrics
    assert "quiver_decode_memory_bytes 0" in metrics  # nothing held once requests are done
    assert_intact(server)


def test_flight_batches_past_the_decode_limit_are_refused(start_server):
    import pyarrow.flight as flight
    server = start_server("--max-decode-bytes", "8mb")
    make_table(server)
    client = flight.connect(server.flight_url)
    small = pa.table({"id": ["s"], "name": ["x"]})
    big = pa.table({"id": [str(i) for i in range(10)], "name": ["n" * (1 << 20)] * 10})
    writer, _ = client.do_put(flight.FlightDescriptor.for_path("t"), small.schema)
    writer.write_table(small)
    with pytest.raises(pa.ArrowInvalid, match="max-decode-bytes"):
        writer.write_table(big)
        writer.close()
    assert_intact(server)
    response = requests.post(f"{server.url}/api/v1/table/t/fetch", json={"keys": ["s", "0"]})
    assert response.json()["found"] == [True, False]
