"""End-to-end tests of quiverd's Arrow Flight service with pyarrow.flight, and raw gRPC (grpcio)
for status codes and malformed messages that pyarrow would never send."""

import json
import random
import threading

import grpc
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import requests

SCHEMA = {
    "key": "doc_id",
    "columns": {
        "doc_id": {"dtype": "utf8", "nullable": False},
        "score": {"dtype": "float32"},
        "clicks": {"dtype": "int64"},
        "emb": {"dtype": "fixed_size_list[float32, 3]"},
        "title": {"dtype": "utf8"},
    },
}

DATA = pa.table({
    "doc_id": ["a", "b", "c"],
    "score": pa.array([0.5, 1.5, 2.5], pa.float32()),
    "clicks": pa.array([1, 2, 3], pa.int64()),
    "emb": pa.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], pa.list_(pa.float32(), 3)),
    "title": ["x", None, "z"],
})


def action(client, kind, body=None):
    payload = b"" if body is None else json.dumps(body).encode()
    return [json.loads(r.body.to_pybytes()) for r in client.do_action(flight.Action(kind, payload))]


def ticket(**fields):
    return flight.Ticket(json.dumps(fields).encode())


def put(client, table, data):
    writer, reader = client.do_put(flight.FlightDescriptor.for_path(table), data.schema)
    acks = []
    with writer:
        for batch in data.to_batches():
            writer.write_batch(batch)
            acks.append(json.loads(reader.read().to_pybytes()))
    return acks


@pytest.fixture
def client(server):
    with flight.connect(server.flight_url) as connected:
        yield connected


@pytest.fixture
def docs(client):
    action(client, "create_table", {"table": "docs", "schema": SCHEMA})
    put(client, "docs", DATA)
    return client


def test_actions_create_list_stats_delete_drop(client, server):
    types = {a.type: a.description for a in client.list_actions()}
    assert set(types) == {"create_table", "drop_table", "alter_table", "describe_table", "delete",
                          "stats", "snapshot"}
    assert all(types.values())
    created = action(client, "create_table", {"table": "docs", "schema": SCHEMA})
    assert created == [{**SCHEMA, "columns": {
        name: {**spec, "nullable": spec.get("nullable", True)}
        for name, spec in SCHEMA["columns"].items()}}]
    # The same catalog as HTTP.
    assert requests.get(f"{server.url}/api/v1/table/docs/schema").json() == created[0]
    assert put(client, "docs", DATA) == [{"batch": 0, "rows_written": 3, "rows_skipped": 0}]
    [stats] = action(client, "stats", {"table": "docs"})
    assert stats["tables"][0]["table"] == "docs" and stats["tables"][0]["rows"] == 3
    assert stats["tables"][0]["bytes"] > 0
    assert action(client, "stats")[0]["tables"] == stats["tables"]
    assert action(client, "delete", {"table": "docs", "keys": ["a", "zz"]}) == [{"deleted": 1}]
    assert action(client, "stats")[0]["tables"][0]["rows"] == 2
    assert action(client, "drop_table", {"table": "docs"}) == [{"dropped": "docs"}]
    assert action(client, "stats") == [{"tables": []}]


def test_list_flights_info_and_schema(docs):
    [info] = list(docs.list_flights())
    assert info.descriptor.path == [b"docs"]
    assert info.total_records == 3 and info.total_bytes > 0
    schema = info.schema
    assert schema.names == ["doc_id", "score", "clicks", "emb", "title"]
    assert schema.field("doc_id").metadata == {b"quiver.key": b"true"}
    assert not schema.field("doc_id").nullable
    descriptor = flight.FlightDescriptor.for_path("docs")
    assert docs.get_flight_info(descriptor).schema == schema
    assert docs.get_schema(descriptor).schema == schema
    # The endpoint's ticket reads the whole table.
    whole = docs.do_get(info.endpoints[0].ticket).read_all()
    assert whole.sort_by("doc_id").to_pydict() == DATA.to_pydict()


def test_do_get_by_keys_in_request_order(docs):
    got = docs.do_get(ticket(table="docs", keys=["c", "missing", "a", "c"])).read_all()
    assert got.column_names == ["score", "clicks", "emb", "title"]
    assert got.to_pydict() == {
        "score": [2.5, None, 0.5, 2.5],
        "clicks": [3, None, 1, 3],
        "emb": [[7, 8, 9], None, [1, 2, 3], [7, 8, 9]],
        "title": ["z", None, "x", "z"],
    }
    with_found = docs.do_get(ticket(table="docs", keys=["b", "q"], columns=["clicks"],
                                    found=True)).read_all()
    assert with_found.to_pydict() == {"clicks": [2, None], "_found": [True, False]}
    assert with_found.schema.field("_found").nullable is False
    # The whole table, with a column subset (the key always comes first).
    scan = docs.do_get(ticket(table="docs", columns=["title"])).read_all()
    assert scan.column_names == ["doc_id", "title"]
    assert sorted(zip(*scan.to_pydict().values())) == [("a", "x"), ("b", None), ("c", "z")]
    assert docs.do_get(ticket(table="docs", keys=[])).read_all().num_rows == 0


def test_do_get_large_key_sets_come_in_batches(client):
    action(client, "create_table", {"table": "big", "schema": {
        "key": "id", "columns": {"id": {"dtype": "int64"}, "v": {"dtype": "float64"}}}})
    ids = list(range(150_000))
    put(client, "big", pa.table({"id": pa.array(ids, pa.int64()),
                                 "v": pa.array([i * 0.5 for i in ids])}))
    keys = ids[::-1]
    reader = client.do_get(ticket(table="big", keys=keys))
    batches = [chunk.data for chunk in reader]
    assert len(batches) == 3 and max(b.num_rows for b in batches) == 65536
    values = pa.Table.from_batches(batches).column("v").to_pylist()
    assert values == [k * 0.5 for k in keys]


def test_do_put_batches_event_time_and_partial_columns(client):
    action(client, "create_table", {"table": "ev", "schema": {
        "key": "id", "event_time": "ts",
        "columns": {"id": {"dtype": "utf8"}, "ts": {"dtype": "timestamp[ms, tz=UTC]",
                                                     "nullable": False},
                    "v": {"dtype": "int32"}, "w": {"dtype": "int32"}}}})
    ts = pa.timestamp("ms", tz="UTC")
    first = pa.table({"id": ["a", "b"], "ts": pa.array([10, 10], ts), "v": pa.array([1, 2], pa.int32()),
                      "w": pa.array([7, 8], pa.int32())})
    assert put(client, "ev", first) == [{"batch": 0, "rows_written": 2, "rows_skipped": 0}]
    # Two batches in one stream; "a" is older than stored and skipped; "w" is kept.
    second = pa.table({"id": ["a", "b", "c"], "ts": pa.array([5, 20, 1], ts),
                       "v": pa.array([100, 200, 300], pa.int32())})
    writer, reader = client.do_put(flight.FlightDescriptor.for_path("ev"), second.schema)
    with writer:
        writer.write_batch(second.slice(0, 1).to_batches()[0])
        writer.write_batch(second.slice(1).to_batches()[0])
        acks = [json.loads(reader.read().to_pybytes()) for _ in range(2)]
    assert acks == [{"batch": 0, "rows_written": 0, "rows_skipped": 1},
                    {"batch": 1, "rows_written": 2, "rows_skipped": 0}]
    got = client.do_get(ticket(table="ev", keys=["a", "b", "c"], columns=["v", "w"])).read_all()
    assert got.to_pydict() == {"v": [1, 200, 300], "w": [7, 8, None]}


def test_do_exchange_is_a_pipelined_lookup_channel(docs):
    descriptor = flight.FlightDescriptor.for_path("docs", "clicks", "title")
    writer, reader = docs.do_exchange(descriptor)
    with writer:
        writer.begin(pa.schema([("doc_id", pa.utf8())]))
        key_sets = [["a"], ["c", "nope", "b"], [], ["b"] * 5]
        for keys in key_sets:  # send everything first: the server answers as batches arrive
            writer.write_batch(pa.record_batch([pa.array(keys, pa.utf8())], names=["doc_id"]))
        results = [reader.read_chunk().data.to_pydict() for _ in key_sets]
        writer.done_writing()
    assert results == [
        {"clicks": [1], "title": ["x"]},
        {"clicks": [3, None, 2], "title": ["z", None, None]},
        {"clicks": [], "title": []},
        {"clicks": [2] * 5, "title": [None] * 5},
    ]
    # A command descriptor names the table, the columns and the found column.
    command = flight.FlightDescriptor.for_command(
        json.dumps({"table": "docs", "columns": ["score"], "found": True}))
    writer, reader = docs.do_exchange(command)
    with writer:
        writer.begin(pa.schema([("k", pa.utf8())]))
        writer.write_batch(pa.record_batch([pa.array(["c", "x"])], names=["k"]))
        assert reader.read_chunk().data.to_pydict() == {"score": [2.5, None],
                                                        "_found": [True, False]}
        writer.done_writing()


def expect_error(kind, text, call):
    with pytest.raises(kind) as caught:
        call()
    assert text in str(caught.value), str(caught.value)


def test_errors_name_the_problem_and_change_nothing(docs, server):
    get = lambda **t: docs.do_get(ticket(**t)).read_all()  # noqa: E731
    expect_error(pa.ArrowKeyError, "table 'nope' does not exist",
                 lambda: get(table="nope", keys=["a"]))
    expect_error(pa.ArrowKeyError, "no column 'nope'",
                 lambda: get(table="docs", keys=["a"], columns=["nope"]))
    expect_error(pa.ArrowInvalid, "row 0", lambda: get(table="docs", keys=[1]))
    expect_error(pa.ArrowInvalid, "\"table\"", lambda: get(keys=["a"]))
    expect_error(pa.ArrowInvalid, "not a JSON object",
                 lambda: docs.do_get(flight.Ticket(b"\xff\x00garbage")).read_all())
    expect_error(pa.ArrowInvalid, "\"found\" needs \"keys\"", lambda: get(table="docs", found=True))
    expect_error(pa.ArrowKeyError, "does not exist",
                 lambda: docs.get_flight_info(flight.FlightDescriptor.for_path("nope")))
    expect_error(pa.ArrowInvalid, "names only the table",
                 lambda: docs.get_schema(flight.FlightDescriptor.for_path("docs", "score")))
    expect_error(pa.ArrowException, "already exists",
                 lambda: action(docs, "create_table", {"table": "docs", "schema": SCHEMA}))
    expect_error(pa.ArrowInvalid, "dtype",
                 lambda: action(docs, "create_table", {"table": "t2", "schema": {
                     "key": "k", "columns": {"k": {"dtype": "complex128"}}}}))
    expect_error(pa.ArrowInvalid, "needs \"table\"", lambda: action(docs, "drop_table", {}))
    expect_error(pa.ArrowInvalid, "not a JSON object",
                 lambda: list(docs.do_action(flight.Action("stats", b"[1"))))
    expect_error(pa.ArrowNotImplementedError, "no action 'compact'",
                 lambda: action(docs, "compact", {}))
    expect_error(pa.ArrowKeyError, "does not exist",
                 lambda: action(docs, "delete", {"table": "nope", "keys": ["a"]}))

    # DoPut: a wrong type names the column; nothing of that batch is written.
    bad = pa.table({"doc_id": ["a", "new"], "clicks": pa.array(["x", "y"])})
    expect_error(pa.ArrowInvalid, "clicks", lambda: put(docs, "docs", bad))
    expect_error(pa.ArrowInvalid, "doc_id",
                 lambda: put(docs, "docs", pa.table({"clicks": pa.array([1], pa.int64())})))
    expect_error(pa.ArrowKeyError, "does not exist", lambda: put(docs, "nope", DATA))

    # DoExchange: a key batch has one column.
    def exchange_two_columns():
        writer, reader = docs.do_exchange(flight.FlightDescriptor.for_path("docs"))
        with writer:
            writer.begin(pa.schema([("a", pa.utf8()), ("b", pa.utf8())]))
            writer.write_batch(pa.record_batch([pa.array(["a"]), pa.array(["b"])], names=["a", "b"]))
            reader.read_chunk()
    expect_error(pa.ArrowInvalid, "exactly one column", exchange_two_columns)

    # Nothing above changed the table.
    assert docs.do_get(ticket(table="docs")).read_all().sort_by("doc_id").to_pydict() == \
        DATA.to_pydict()
    metrics = requests.get(f"{server.url}/metrics").text
    assert 'quiver_flight_requests_total{method="DoGet",code="NOT_FOUND"} 2' in metrics
    assert 'quiver_flight_request_duration_seconds_count{method="DoPut"}' in metrics


def test_concurrent_readers_and_a_writer(client, server):
    action(client, "create_table", {"table": "c", "schema": {
        "key": "id", "columns": {"id": {"dtype": "int64"}, "a": {"dtype": "int64"},
                                 "b": {"dtype": "int64"}}}})
    n = 2000
    put(client, "c", pa.table({"id": pa.array(range(n), pa.int64()),
                               "a": pa.array([0] * n, pa.int64()), "b": pa.array([0] * n, pa.int64())}))
    errors = []
    stop = threading.Event()

    def reader():
        try:
            with flight.connect(server.flight_url) as own:
                while not stop.is_set():
                    keys = random.sample(range(n), 50)
                    got = own.do_get(ticket(table="c", keys=keys)).read_all().to_pydict()
                    # Each row is written whole: a == b in every version of a row.
                    assert got["a"] == got["b"], got
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    with flight.connect(server.flight_url) as writer_client:
        for version in range(1, 30):
            put(writer_client, "c", pa.table({"id": pa.array(range(n), pa.int64()),
                                              "a": pa.array([version] * n, pa.int64()),
                                              "b": pa.array([version] * n, pa.int64())}))
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]


# --- raw gRPC: hand-made protobuf messages of Flight.proto ---------------------------------------

def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number, payload):
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def descriptor_path(*path):
    return varint(1 << 3) + varint(1) + b"".join(field(3, p.encode()) for p in path)  # PATH


def flight_data(descriptor=None, header=b"", body=b""):
    out = field(1, descriptor) if descriptor is not None else b""
    if header:
        out += field(2, header)
    if body:
        out += field(1000, body)
    return out


def raw_call(server, method, kind, request):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.flight_port}")
    identity = lambda b: b  # noqa: E731
    make = getattr(channel, kind)
    call = make(f"/arrow.flight.protocol.FlightService/{method}", request_serializer=identity,
                response_deserializer=identity)
    try:
        if kind.startswith("stream"):
            return list(call(iter(request), timeout=10))
        if kind == "unary_stream":
            return list(call(request, timeout=10))
        return call(request, timeout=10)
    finally:
        channel.close()


def grpc_code(server, method, kind, request):
    with pytest.raises(grpc.RpcError) as caught:
        raw_call(server, method, kind, request)
    return caught.value.code()


def test_grpc_status_codes(docs, server):
    assert grpc_code(server, "GetFlightInfo", "unary_unary",
                     descriptor_path("nope")) == grpc.StatusCode.NOT_FOUND
    assert grpc_code(server, "DoGet", "unary_stream",
                     field(1, b"{]")) == grpc.StatusCode.INVALID_ARGUMENT
    create = field(1, b"create_table") + field(2, json.dumps(
        {"table": "docs", "schema": SCHEMA}).encode())
    assert grpc_code(server, "DoAction", "unary_stream", create) == grpc.StatusCode.ALREADY_EXISTS
    assert grpc_code(server, "DoAction", "unary_stream",
                     field(1, b"nope")) == grpc.StatusCode.UNIMPLEMENTED


def ipc_messages(batch):
    """(header, body) of the schema message and of the record batch message of `batch`."""
    schema = pa.ipc.read_message(batch.schema.serialize())
    data = pa.ipc.read_message(batch.serialize())
    return (schema.metadata.to_pybytes(), b""), (data.metadata.to_pybytes(),
                                                 data.body.to_pybytes())


def mutate(data, rng):
    data = bytearray(data)
    if not data:
        return bytes(rng.randbytes(rng.randint(1, 16)))
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        at = rng.randrange(len(data))
        if choice < 0.6:
            data[at] = rng.randrange(256)
        elif choice < 0.8:
            del data[at:at + rng.randint(1, 8)]
        else:
            data[at:at] = rng.randbytes(rng.randint(1, 8))
    return bytes(data)


def test_malformed_streams_never_crash_the_server(docs, server):
    put_batch = DATA.to_batches()[0]
    key_batch = pa.record_batch([pa.array(["a", "b"])], names=["doc_id"])
    rng = random.Random(1234)
    answered = 0
    for round_number in range(240):
        method = "DoPut" if round_number % 2 == 0 else "DoExchange"
        (schema_header, _), (batch_header, batch_body) = ipc_messages(
            put_batch if method == "DoPut" else key_batch)
        part = rng.randrange(3)
        if part == 0:
            schema_header = mutate(schema_header, rng)
        elif part == 1:
            batch_header = mutate(batch_header, rng)
        else:
            batch_body = mutate(batch_body, rng)
        messages = [flight_data(descriptor_path("docs"), schema_header),
                    flight_data(None, batch_header, batch_body)]
        try:
            raw_call(server, method, "stream_stream", messages)
            answered += 1
        except grpc.RpcError as e:
            assert e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL,
                                grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNKNOWN), e
    # Not every mutation is harmful (a changed float is still a float), but most are refused.
    assert answered < 200
    # Protobuf that does not parse, a stream without a descriptor, an empty stream.
    for messages in ([b"\xff\xff\xff"], [flight_data(None, b"\x00" * 8)], []):
        for method in ("DoPut", "DoExchange"):
            with pytest.raises(grpc.RpcError):
                raw_call(server, method, "stream_stream", messages)
    # Still serving, and the keys the mutations may have written are all valid rows.
    assert requests.get(f"{server.url}/health").status_code == 200
    table = docs.do_get(ticket(table="docs")).read_all()
    assert table.num_rows >= 3
    table.validate(full=True)
