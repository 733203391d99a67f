"""End-to-end tests of quiverd's HTTP API with real clients (requests, pyarrow, curl)."""

import base64
import gc
import io
import json
import socket
import subprocess
import threading
import time

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
import requests

from quiverd import QUIVERD

ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"

SCHEMA = {
    "key": "doc_id",
    "columns": {
        "doc_id": {"dtype": "utf8", "nullable": False},
        "score": {"dtype": "float32"},
        "clicks": {"dtype": "int64"},
        "title": {"dtype": "utf8"},
        "blob": {"dtype": "binary"},
        "updated": {"dtype": "timestamp[ms, tz=UTC]"},
        "emb": {"dtype": "fixed_size_list[float32, 3]"},
        "hist": {"dtype": "list[int32]"},
        "flag": {"dtype": "bool"},
    },
}


def create(server, name="docs", schema=SCHEMA):
    response = requests.put(f"{server.url}/api/v1/table/{name}", json=schema)
    assert response.status_code == 201, response.text
    return response


def write_json(server, columns, name="docs"):
    response = requests.put(f"{server.url}/api/v1/table/{name}/write", json={"columns": columns})
    return response


def fetch_json(server, keys, columns=None, name="docs"):
    body = {"keys": keys}
    if columns is not None:
        body["columns"] = columns
    return requests.post(f"{server.url}/api/v1/table/{name}/fetch", json=body)


def ipc_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def assert_error(response, status, code, text=""):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == code, body
    assert text in body["error"], body


def test_health(server):
    response = requests.get(server.url + "/health")
    assert response.status_code == 200
    assert response.text == "OK"


def test_table_lifecycle(server):
    assert requests.get(server.url + "/api/v1/table").json() == {}
    created = create(server)
    assert created.json()["key"] == "doc_id"
    assert created.json()["columns"]["score"] == {"dtype": "float32", "nullable": True}
    assert_error(requests.put(server.url + "/api/v1/table/docs", json=SCHEMA), 409, "ALREADY_EXISTS",
                 "table 'docs' already exists")
    listed = requests.get(server.url + "/api/v1/table").json()
    assert list(listed) == ["docs"]
    assert listed["docs"]["columns"]["emb"]["dtype"] == "fixed_size_list[float32, 3]"
    schema = requests.get(server.url + "/api/v1/table/docs/schema")
    assert schema.status_code == 200
    assert schema.json() == listed["docs"]
    dropped = requests.delete(server.url + "/api/v1/table/docs")
    assert dropped.status_code == 204 and dropped.content == b""
    assert_error(requests.get(server.url + "/api/v1/table/docs/schema"), 404, "NOT_FOUND",
                 "table 'docs' does not exist")
    assert_error(requests.delete(server.url + "/api/v1/table/docs"), 404, "NOT_FOUND")


def test_invalid_schemas_name_the_column(server):
    bad = {"key": "id", "columns": {"id": {"dtype": "utf8"}, "x": {"dtype": "decimal"}}}
    assert_error(requests.put(server.url + "/api/v1/table/t", json=bad), 400, "INVALID_ARGUMENT",
                 "column 'x'")
    assert_error(requests.put(server.url + "/api/v1/table/t", data="{nope",
                              headers={"Content-Type": "application/json"}),
                 400, "INVALID_ARGUMENT", "not valid JSON")
    assert_error(requests.put(server.url + "/api/v1/table/bad%20name", json=SCHEMA), 400,
                 "INVALID_ARGUMENT", "table name")
    assert requests.get(server.url + "/api/v1/table").json() == {}


def test_json_write_and_fetch_every_type(server):
    create(server)
    written = write_json(server, {
        "doc_id": ["a", "b", "long key over eight bytes"],
        "score": [1.5, None, -2.25],
        "clicks": [1, 2, 9007199254740993],
        "title": ["t", "", "a title that is longer than eight bytes, with \"quotes\" and é"],
        "blob": [base64.b64encode(b"\x00\x01\xff").decode(), None, ""],
        "updated": [0, 1700000000123, None],
        "emb": [[1, 2, 3], None, [0.5, 0.25, 0.125]],
        "hist": [[], [1, 2, 3], None],
        "flag": [True, False, None],
    })
    assert written.status_code == 200, written.text
    assert written.json() == {"rows_written": 3, "rows_skipped": 0}

    response = fetch_json(server, ["long key over eight bytes", "missing", "a", "a"])
    assert response.status_code == 200, response.text
    assert response.headers["X-Quiver-Found-Count"] == "3"
    body = response.json()
    assert body["found"] == [True, False, True, True]
    columns = body["columns"]
    assert list(columns) == ["score", "clicks", "title", "blob", "updated", "emb", "hist", "flag"]
    assert columns["score"] == [-2.25, None, 1.5, 1.5]
    assert columns["clicks"] == [9007199254740993, None, 1, 1]
    assert columns["title"][0] == "a title that is longer than eight bytes, with \"quotes\" and é"
    encoded = base64.b64encode(b"\x00\x01\xff").decode()
    assert columns["blob"] == ["", None, encoded, encoded]
    assert columns["updated"] == [None, None, 0, 0]
    assert columns["emb"] == [[0.5, 0.25, 0.125], None, [1, 2, 3], [1, 2, 3]]
    assert columns["hist"] == [None, None, [], []]
    assert columns["flag"] == [None, None, True, True]

    only = fetch_json(server, ["b"], columns=["hist", "score"]).json()
    assert only == {"columns": {"hist": [[1, 2, 3]], "score": [None]}, "found": [True]}


def test_partial_writes_keep_other_columns(server):
    create(server)
    assert write_json(server, {"doc_id": ["a"], "score": [1.0], "clicks": [5]}).status_code == 200
    assert write_json(server, {"doc_id": ["a", "new"], "clicks": [6, 7]}).status_code == 200
    body = fetch_json(server, ["a", "new"], ["score", "clicks"]).json()
    assert body["columns"] == {"score": [1.0, None], "clicks": [6, 7]}


def test_arrow_ipc_fetch_and_write(server):
    create(server)
    table = pa.table({
        "doc_id": pa.array(["k1", "k2", "k3"]),
        "score": pa.array([0.5, 1.5, None], pa.float32()),
        "emb": pa.array([[1, 2, 3], [4, 5, 6], None], pa.list_(pa.float32(), 3)),
    })
    # Two batches in one stream: both are written.
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_batch(table.slice(0, 2).to_batches()[0])
        writer.write_batch(table.slice(2, 1).to_batches()[0])
    written = requests.put(server.url + "/api/v1/table/docs/write", data=sink.getvalue(),
                           headers={"Content-Type": ARROW})
    assert written.json() == {"rows_written": 3, "rows_skipped": 0}, written.text

    # JSON keys, Arrow response.
    response = requests.post(server.url + "/api/v1/table/docs/fetch",
                             json={"keys": ["k3", "nope", "k1"], "columns": ["score", "emb"]},
                             headers={"Accept": ARROW})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == ARROW
    assert response.headers["X-Quiver-Found-Count"] == "2"
    result = ipc.open_stream(response.content).read_all()
    assert result.column_names == ["score", "emb"]
    assert result.column("score").to_pylist() == [None, None, 0.5]
    assert result.column("emb").to_pylist() == [None, None, [1, 2, 3]]

    # Arrow keys in the body, columns in the query string, found as a column.
    keys = pa.table({"doc_id": pa.array(["k2", "zz"])})
    response = requests.post(server.url + "/api/v1/table/docs/fetch?columns=score&found=true",
                             data=ipc_bytes(keys),
                             headers={"Content-Type": ARROW, "Accept": ARROW})
    assert response.status_code == 200, response.text
    result = ipc.open_stream(response.content).read_all()
    assert result.column_names == ["score", "_found"]
    assert result.column("score").to_pylist() == [1.5, None]
    assert result.column("_found").to_pylist() == [True, False]


def test_parquet_write(server):
    create(server)
    table = pa.table({"doc_id": ["p1", "p2"], "clicks": pa.array([10, 20], pa.int64()),
                      "hist": pa.array([[1], [2, 3]], pa.list_(pa.int32()))})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=1)
    written = requests.put(server.url + "/api/v1/table/docs/write", data=sink.getvalue(),
                           headers={"Content-Type": PARQUET})
    assert written.json() == {"rows_written": 2, "rows_skipped": 0}, written.text
    assert fetch_json(server, ["p2"], ["clicks", "hist"]).json()["columns"] == \
        {"clicks": [20], "hist": [[2, 3]]}


def test_delete(server):
    create(server)
    write_json(server, {"doc_id": ["a", "b", "c"], "clicks": [1, 2, 3]})
    response = requests.post(server.url + "/api/v1/table/docs/delete", json={"keys": ["a", "zz", "c"]})
    assert response.json() == {"deleted": 2}
    assert fetch_json(server, ["a", "b", "c"], ["clicks"]).json()["found"] == [False, True, False]


def test_event_time_guard_over_http(server):
    schema = {"key": "id", "columns": {"id": {"dtype": "int64"},
                                       "t": {"dtype": "timestamp[ms]", "nullable": False},
                                       "v": {"dtype": "float64"}},
              "event_time": "t"}
    create(server, "events", schema)
    assert write_json(server, {"id": [1, 2], "t": [100, 100], "v": [1, 1]}, "events").json() == \
        {"rows_written": 2, "rows_skipped": 0}
    assert write_json(server, {"id": [1, 2], "t": [50, 200], "v": [2, 2]}, "events").json() == \
        {"rows_written": 1, "rows_skipped": 1}
    assert fetch_json(server, [1, 2], ["v"], "events").json()["columns"]["v"] == [1, 2]


def test_errors_change_nothing_and_name_the_problem(server):
    create(server)
    write_json(server, {"doc_id": ["a"], "clicks": [1]})
    assert_error(write_json(server, {"doc_id": ["a", "b"], "clicks": ["x", 2]}), 400,
                 "INVALID_ARGUMENT", "column 'clicks'")
    assert_error(write_json(server, {"doc_id": ["a"], "nope": [1]}), 404, "NOT_FOUND",
                 "no column 'nope'")
    assert_error(write_json(server, {"doc_id": ["a", "b"], "clicks": [1]}), 400,
                 "INVALID_ARGUMENT", "column 'doc_id' has 2 values, column 'clicks' has 1")
    assert_error(write_json(server, {"doc_id": ["a"], "emb": [[1, 2]]}), 400, "INVALID_ARGUMENT",
                 "column 'emb'")
    assert_error(write_json(server, {"doc_id": [None], "clicks": [1]}), 400, "INVALID_ARGUMENT",
                 "null")
    assert_error(fetch_json(server, ["a"], ["nope"]), 404, "NOT_FOUND", "no column 'nope'")
    assert_error(fetch_json(server, [1, 2]), 400, "INVALID_ARGUMENT", "keys")
    assert_error(requests.post(server.url + "/api/v1/table/docs/fetch", json={"columns": []}), 400,
                 "INVALID_ARGUMENT", "\"keys\"")
    assert_error(requests.post(server.url + "/api/v1/table/docs/fetch", data=b"\x00garbage",
                               headers={"Content-Type": ARROW}), 400, "INVALID_ARGUMENT",
                 "Arrow IPC")
    assert_error(requests.put(server.url + "/api/v1/table/docs/write", data=b"PAR1garbagePAR1",
                              headers={"Content-Type": PARQUET}), 400, "INVALID_ARGUMENT",
                 "Parquet")
    # Nothing above changed the table.
    body = fetch_json(server, ["a", "b"], ["clicks"]).json()
    assert body == {"columns": {"clicks": [1, None]}, "found": [True, False]}


def test_int64_keys_in_json_bodies(server):
    create(server, "events", {"key": "id", "columns": {"id": {"dtype": "int64"},
                                                      "v": {"dtype": "float64"}}})
    assert write_json(server, {"id": [1, -2, 2**63 - 1], "v": [0.5, 1.5, 2.5]},
                      "events").status_code == 200
    body = fetch_json(server, [2**63 - 1, -2, 7], name="events").json()
    assert body == {"columns": {"v": [2.5, 1.5, None]}, "found": [True, True, False]}
    for bad, text in [(["1"], "row 0"), ([1, 1.5], "row 1"), ([2**64], "out of range"),
                      ([1, True], "row 1")]:
        assert_error(fetch_json(server, bad, name="events"), 400, "INVALID_ARGUMENT", text)
    assert_error(write_json(server, {"id": [2**63], "v": [1.0]}, "events"), 400,
                 "INVALID_ARGUMENT", "out of range")
    # Nothing above changed the table.
    assert requests.get(f"{server.url}/metrics").text.count('quiver_table_rows{table="events"} 3')


def test_busy_polling_threads_serve_the_same(start_server):
    server = start_server("--busy-poll-us", "200", "--threads", "1")
    create(server)
    assert write_json(server, {"doc_id": ["a", "b"], "clicks": [1, 2]}).status_code == 200
    with requests.Session() as session:
        for _ in range(50):
            body = session.post(f"{server.url}/api/v1/table/docs/fetch",
                                json={"keys": ["b", "a", "z"], "columns": ["clicks"]}).json()
            assert body["columns"] == {"clicks": [2, 1, None]}


def test_protocol_errors(start_server):
    server = start_server("--max-request-bytes", "2000")
    create(server)
    assert_error(requests.get(server.url + "/api/v1/table/docs/write"), 405, "METHOD_NOT_ALLOWED")
    assert requests.get(server.url + "/api/v1/table/docs/write").headers["Allow"] == "PUT"
    assert_error(requests.get(server.url + "/nope"), 404, "NOT_FOUND", "no route")
    assert_error(requests.put(server.url + "/api/v1/table/docs/write", data="a,b",
                              headers={"Content-Type": "text/csv"}), 415, "UNSUPPORTED_MEDIA_TYPE",
                 "text/csv")
    assert_error(requests.post(server.url + "/api/v1/table/docs/fetch", json={"keys": ["a"]},
                               headers={"Accept": "text/html"}), 406, "NOT_ACCEPTABLE")
    big = {"columns": {"doc_id": ["x" * 3000]}}
    assert_error(requests.put(server.url + "/api/v1/table/docs/write", json=big), 413,
                 "PAYLOAD_TOO_LARGE", "2000 bytes")
    # No Content-Length on a body route: 411.
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(b"POST /api/v1/table/docs/fetch HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\n\r\n")
        reply = raw.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 411"), reply
    assert "LENGTH_REQUIRED" in reply
    # Garbage instead of HTTP: 400, and the server keeps serving.
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        reply = raw.recv(4096).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 400"), reply
    assert requests.get(server.url + "/health").status_code == 200


def test_keep_alive_and_concurrent_clients(server):
    create(server)
    write_json(server, {"doc_id": [f"k{i}" for i in range(100)], "clicks": list(range(100))})
    errors = []
    stop = threading.Event()

    def writer():
        with requests.Session() as session:
            round_number = 0
            while not stop.is_set():
                round_number += 1
                # Rows always satisfy clicks == score * 2 (written together).
                ids = [f"k{i}" for i in range(100)]
                response = session.put(server.url + "/api/v1/table/docs/write", json={"columns": {
                    "doc_id": ids, "clicks": [round_number * 2] * 100,
                    "score": [float(round_number)] * 100}})
                if response.status_code != 200:
                    errors.append(response.text)

    def reader():
        with requests.Session() as session:  # one keep-alive connection
            for _ in range(150):
                response = session.post(server.url + "/api/v1/table/docs/fetch",
                                        json={"keys": [f"k{i}" for i in range(0, 100, 7)],
                                              "columns": ["clicks", "score"]})
                if response.status_code != 200:
                    errors.append(response.text)
                    return
                columns = response.json()["columns"]
                for clicks, score in zip(columns["clicks"], columns["score"]):
                    if score is not None and clicks != score * 2:
                        errors.append(f"torn row: clicks={clicks} score={score}")

    write_thread = threading.Thread(target=writer)
    write_thread.start()
    readers = [threading.Thread(target=reader) for _ in range(4)]
    for thread in readers:
        thread.start()
    for thread in readers:
        thread.join()
    stop.set()
    write_thread.join()
    assert errors == []


def test_curl_smoke(server):
    create(server)
    write_json(server, {"doc_id": ["a"], "clicks": [42]})
    out = subprocess.run(["curl", "-sS", "-X", "POST", "-H", "Content-Type: application/json",
                          "-d", '{"keys": ["a"], "columns": ["clicks"]}',
                          server.url + "/api/v1/table/docs/fetch"],
                         check=True, capture_output=True, text=True).stdout
    assert json.loads(out) == {"columns": {"clicks": [42]}, "found": [True]}


def test_command_line():
    help_text = subprocess.run([str(QUIVERD), "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0
    for flag in ["--bind", "--http-port", "--flight-port", "--data-dir", "--threads",
                 "--log-level", "--max-request-bytes"]:
        assert flag in help_text.stdout
    assert "(default: 8080; http.port, QUIVER_HTTP_PORT)" in help_text.stdout
    assert "--config FILE" in help_text.stdout
    version = subprocess.run([str(QUIVERD), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("quiverd ")
    for args, text in [(["--nope"], "unknown option '--nope'"),
                       (["--threads", "zero"], "--threads: 'zero' is not an integer"),
                       (["--http-port=70000"], "--http-port: 70000 is outside"),
                       (["--log-level", "loud"], "--log-level: 'loud'"),
                       (["--threads"], "--threads needs a value")]:
        result = subprocess.run([str(QUIVERD), *args], capture_output=True, text=True)
        assert result.returncode == 2, (args, result.stderr)
        assert text in result.stderr


def test_port_in_use_stops_the_start(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([str(QUIVERD), "--http-port", str(port), "--flight-port", "0",
                                 "--resp-port", "0", "--data-dir", str(tmp_path / "d")],
                                capture_output=True, text=True, timeout=10)
        assert result.returncode == 1
        assert "Address already in use" in result.stderr
        assert str(port) in result.stderr
        # The same for the Flight port, whose listener (gRPC) would otherwise share it.
        result = subprocess.run([str(QUIVERD), "--http-port", "0", "--flight-port", str(port),
                                 "--resp-port", "0", "--data-dir", str(tmp_path / "d")],
                                capture_output=True, text=True, timeout=10)
        assert result.returncode == 1
        assert "Address already in use" in result.stderr and "--flight-port" in result.stderr
    # One port cannot serve both.
    result = subprocess.run([str(QUIVERD), "--http-port", "9999", "--flight-port", "9999"],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 2 and "http.port and flight.port" in result.stderr


def test_sigint_and_sigterm_exit_zero(start_server):
    import signal as signals
    for sig in (signals.SIGINT, signals.SIGTERM):
        server = start_server()
        assert server.stop(sig) == 0
        assert "stopped" in server.log()


def test_json_timestamps_accept_iso_8601(server):
    schema = {"key": "id", "columns": {"id": {"dtype": "int64"}, "t": {"dtype": "timestamp[ms]"}}}
    create(server, "times", schema)
    assert write_json(server, {"id": [1, 2], "t": ["2024-01-02T03:04:05.678", 5]}, "times").json() \
        == {"rows_written": 2, "rows_skipped": 0}
    assert fetch_json(server, [1, 2], ["t"], "times").json()["columns"]["t"] == [1704164645678, 5]


def parse_metrics(text):
    """{(name, frozenset(labels)): value} from Prometheus text format."""
    import re
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)', line)
        assert match, line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def test_metrics(server):
    create(server)
    write_json(server, {"doc_id": ["a", "b", "c"], "clicks": [1, 2, 3]})
    for _ in range(3):
        fetch_json(server, ["a"])
    fetch_json(server, ["a"], ["nope"])  # a 404
    response = requests.get(server.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = parse_metrics(response.text)
    fetch = "/api/v1/table/{name}/fetch"
    assert samples[("quiver_http_requests_total",
                    frozenset({("route", fetch), ("method", "POST"), ("status", "200")}))] == 3
    assert samples[("quiver_http_errors_total",
                    frozenset({("route", fetch), ("status", "404")}))] == 1
    assert samples[("quiver_http_request_duration_seconds_count", frozenset({("route", fetch)}))] == 4
    assert samples[("quiver_http_request_duration_seconds_bucket",
                    frozenset({("route", fetch), ("le", "+Inf")}))] == 4
    assert samples[("quiver_table_rows", frozenset({("table", "docs")}))] == 3
    assert samples[("quiver_table_bytes", frozenset({("table", "docs")}))] > 0
    assert samples[("quiver_tables", frozenset())] == 1
    assert samples[("process_resident_memory_bytes", frozenset())] > 1e6
    build = [key for key in samples if key[0] == "quiver_build_info"]
    assert len(build) == 1 and dict(build[0][1])["version"]
    assert_error(requests.post(server.url + "/metrics"), 405, "METHOD_NOT_ALLOWED")


def test_health_is_counted_under_its_route(server):
    requests.get(server.url + "/health")
    requests.get(server.url + "/no/such/route")
    samples = parse_metrics(requests.get(server.url + "/metrics").text)
    assert samples[("quiver_http_requests_total",
                    frozenset({("route", "/health"), ("method", "GET"), ("status", "200")}))] >= 2
    assert samples[("quiver_http_requests_total",
                    frozenset({("route", "unmatched"), ("method", "GET"), ("status", "404")}))] == 1


def recv_all(sock, timeout):
    """Everything the server sends until it closes the connection (or `timeout` passes)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return data, True
            data += chunk
    except socket.timeout:
        return data, False


def test_stalled_headers_and_bodies_are_cut_off(start_server):
    server = start_server("--header-timeout", "1", "--body-timeout", "1")
    create(server)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port)) as slow_headers, \
            socket.create_connection(("127.0.0.1", server.port)) as slow_body:
        slow_headers.sendall(b"POST /api/v1/table/docs/fetch HTTP/1.1\r\nHost: x\r\n")  # never ends
        slow_body.sendall(b"POST /api/v1/table/docs/fetch HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ke")
        # Others are served meanwhile.
        assert requests.get(server.url + "/health").status_code == 200
        _, closed = recv_all(slow_headers, 5)
        assert closed, "a connection with stalled headers stayed open"
        _, closed = recv_all(slow_body, 5)
        assert closed, "a connection with a stalled body stayed open"
    assert time.monotonic() - started < 5
    # An idle keep-alive connection is closed after the header timeout too.
    with socket.create_connection(("127.0.0.1", server.port)) as idle:
        _, closed = recv_all(idle, 5)
        assert closed


def open_connections(server) -> int:
    """quiverd's open HTTP connections, not counting the one asking."""
    text = requests.get(server.url + "/metrics", headers={"Connection": "close"}).text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith("quiver_http_connections_")}
    return int(values["quiver_http_connections_opened_total"]
               - values["quiver_http_connections_closed_total"]) - 1


def wait_for_open_connections(server, count, timeout=10):
    deadline = time.monotonic() + timeout
    while open_connections(server) != count:
        assert time.monotonic() < deadline, f"{open_connections(server)} connections stay open"
        time.sleep(0.02)


def test_connection_cap(start_server):
    server = start_server("--max-connections", "2")
    # Connections of earlier requests (the fixture's readiness check) may wait in reference cycles
    # for the garbage collector before their sockets close; close them now and wait until the
    # server has seen them go (a slow build, ASan's, once shed that one instead of `first`). The
    # asking connection itself closes after its answer: a moment more for the server to see it.
    gc.collect()
    wait_for_open_connections(server, 0)
    time.sleep(0.2)
    first = socket.create_connection(("127.0.0.1", server.port))
    second = socket.create_connection(("127.0.0.1", server.port))
    try:
        for sock in (first, second):  # both accepted and served
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        # Both idle between requests: a third client makes the oldest (first) close, and is served.
        with socket.create_connection(("127.0.0.1", server.port)) as third:
            third.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply, closed = recv_all(third, 5)
            assert reply.startswith(b"HTTP/1.1 200"), reply
        _, closed = recv_all(first, 5)
        assert closed, "the oldest idle connection was not closed to make room"
        first.close()
        second.close()
        wait_for_open_connections(server, 0)  # the server saw them all close
        time.sleep(0.2)  # and the asking connection's own close, as above
        # Two busy connections (each in the middle of a request body): a third is refused.
        first = socket.create_connection(("127.0.0.1", server.port))
        second = socket.create_connection(("127.0.0.1", server.port))
        for sock in (first, second):
            sock.sendall(b"PUT /api/v1/table/x/write HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", server.port)) as third:
            reply, closed = recv_all(third, 5)
        assert reply.startswith(b"HTTP/1.1 503"), reply
        assert b"TOO_MANY_CONNECTIONS" in reply and closed
    finally:
        first.close()
        second.close()
    deadline = time.monotonic() + 5
    while True:  # the slots free up once the server sees the closes
        try:
            if requests.get(server.url + "/health").status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "the server did not recover below its cap"
        time.sleep(0.05)


def test_openapi_document_is_valid_and_truthful(server):
    from openapi_spec_validator import validate
    response = requests.get(server.url + "/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    document = response.json()
    assert document["openapi"] == "3.1.0"
    validate(document)  # a valid OpenAPI 3.1 document

    # Every documented operation is routed by the server, and answers one of its documented statuses.
    create(server, "t")
    write_json(server, {"doc_id": ["a"]}, "t")
    bodies = {"fetch": {"keys": ["a"]}, "write": {"columns": {"doc_id": ["b"]}},
              "delete": {"keys": ["zz"]}, "t": SCHEMA,
              "source": {"uri": str(server.data_dir), "poll_seconds": 60}}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            # Create a fresh table for PUT /api/v1/table/{name}; use "t" otherwise.
            name = "fresh" if (method == "put" and path == "/api/v1/table/{name}") else "t"
            url = server.url + path.replace("{name}", name)
            last = path.rsplit("/", 1)[-1]
            kwargs = {"json": bodies[last]} if last in bodies else {}
            if name == "fresh":
                kwargs = {"json": SCHEMA}
            if method == "patch":
                kwargs = {"json": {"add": {"patched": {"dtype": "float32"}}}}
            if method == "delete":
                requests.put(server.url + "/api/v1/table/gone", json=SCHEMA)
                url = server.url + path.replace("{name}", "gone")
                if last == "source":
                    requests.put(url, json=bodies["source"])
            answer = requests.request(method.upper(), url, **kwargs)
            assert str(answer.status_code) in operation["responses"], (method, path, answer.text)
            assert answer.status_code < 400, (method, path, answer.text)

    # Every route the server answered is documented (route labels of /metrics).
    samples = parse_metrics(requests.get(server.url + "/metrics").text)
    routes = {dict(labels)["route"] for name, labels in samples
              if name == "quiver_http_requests_total"}
    assert routes - {"unmatched"} <= set(document["paths"]), routes - set(document["paths"])


def test_access_log(start_server):
    quiet = start_server()
    requests.get(quiet.url + "/health")
    server = start_server("--access-log")
    create(server)
    fetch_json(server, ["a"])
    lines = [line for line in server.log().splitlines() if "msg=request" in line]
    assert any("method=PUT route=/api/v1/table/{name} target=/api/v1/table/docs status=201" in line
               for line in lines), lines
    fetch_line = [line for line in lines if "route=/api/v1/table/{name}/fetch" in line][0]
    assert "status=200" in fetch_line and "bytes_in=" in fetch_line and " us=" in fetch_line
    assert "msg=request" not in quiet.log()


# --- export ------------------------------------------------------------------------------------

def test_export_streams_the_whole_table_as_parquet_or_arrow(server):
    create(server)
    n = 200_000  # several batches of the scan, several chunks of the body
    table = pa.table({
        "doc_id": [f"d{i}" for i in range(n)],
        "score": pa.array([i / 8 for i in range(n)], pa.float32()),
        "clicks": list(range(n)),
        "title": [None if i % 7 == 0 else f"t{i}" for i in range(n)],
        "emb": pa.array([[i, 0.5, -1] for i in range(n)], pa.list_(pa.float32(), 3)),
    })
    assert requests.put(f"{server.url}/api/v1/table/docs/write", data=ipc_bytes(table),
                        headers={"Content-Type": ARROW}).status_code == 200
    columns = ["doc_id", "score", "clicks", "title", "emb"]
    for fmt, content_type in (("parquet", PARQUET), ("arrow", ARROW), (None, PARQUET)):
        url = f"{server.url}/api/v1/table/docs/export" + (f"?format={fmt}" if fmt else "")
        with requests.get(url, stream=True, timeout=60) as response:
            assert response.status_code == 200
            assert response.headers["Content-Type"] == content_type
            assert response.headers["Transfer-Encoding"] == "chunked"
            assert "docs." in response.headers["Content-Disposition"]
            body = response.raw.read()
        if content_type == PARQUET:
            got = pq.read_table(io.BytesIO(body))
        else:
            got = ipc.open_stream(body).read_all()
        assert got.schema.field("doc_id").type == pa.string()
        assert got.num_rows == n
        got = got.select(columns).sort_by("clicks")
        assert got.equals(table.select(columns).cast(got.schema)), fmt
    # The connection goes on serving after a streamed answer.
    session = requests.Session()
    assert session.get(f"{server.url}/api/v1/table/docs/export?format=arrow").status_code == 200
    assert session.get(f"{server.url}/health").text == "OK"
    assert_error(requests.get(f"{server.url}/api/v1/table/docs/export?format=csv"), 400,
                 "INVALID_ARGUMENT", "format 'csv'")
    assert_error(requests.get(f"{server.url}/api/v1/table/nope/export"), 404, "NOT_FOUND")


def test_export_holds_no_second_copy_of_the_table(start_server):
    from quiverd import ASAN, peak_rss_bytes

    server = start_server()
    requests.put(f"{server.url}/api/v1/table/big", json={
        "key": "id", "columns": {"id": {"dtype": "int64"}, "v": {"dtype": "fixed_size_list[float32, 64]"}}})
    n, chunk = 400_000, 100_000  # ~100 MiB of values
    for start in range(0, n, chunk):
        ids = pa.array(range(start, start + chunk), pa.int64())
        values = pa.FixedSizeListArray.from_arrays(
            pa.array([float(i % 1000) for i in range(chunk * 64)], pa.float32()), 64)
        batch = pa.table({"id": ids, "v": values})
        assert requests.put(f"{server.url}/api/v1/table/big/write", data=ipc_bytes(batch),
                            headers={"Content-Type": ARROW}).status_code == 200
    with open(f"/proc/{server.process.pid}/clear_refs", "w") as f:
        f.write("5")  # the peak RSS starts again from the current RSS
    before = peak_rss_bytes(server.process.pid)
    rows = 0
    with requests.get(f"{server.url}/api/v1/table/big/export?format=arrow", stream=True) as r:
        for batch in ipc.open_stream(r.raw):
            rows += batch.num_rows
    assert rows == n
    if not ASAN:
        grown = peak_rss_bytes(server.process.pid) - before
        assert grown < 48 << 20, grown >> 20  # the table is ~100 MiB
