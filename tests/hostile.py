"""Hostile inputs shared by the hardening tests (tests/e2e/test_hardening.py) and the memory
attack benchmark (bench/suite/attacks.py)."""

import io

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq


def decode_bombs() -> dict[str, tuple[str, bytes]]:
    """Write bodies for a table (id utf8, name utf8, score float64) that decode to far more than
    their size, by name: (Content-Type, body). A 2 KB Parquet file and a 40 KB Arrow IPC stream
    (zstd) that each decode to 1 GB (one 1 MiB value in 1,000 rows), and 40 MB of JSON numbers
    whose document would take some 600 MB."""
    keys = [str(i) for i in range(1000)]
    name = pa.DictionaryArray.from_arrays(pa.array([0] * 1000, pa.int32()),
                                          pa.array(["a" * (1 << 20)]))
    sink = io.BytesIO()
    # Without the stored Arrow schema the column reads back as dense utf8, as the table wants.
    pq.write_table(pa.table({"id": keys, "name": name}), sink, compression="zstd",
                   store_schema=False)
    parquet = sink.getvalue()
    dense = pa.table({"id": keys, "name": name.cast(pa.string())})
    sink = io.BytesIO()
    with ipc.new_stream(sink, dense.schema,
                        options=ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(dense, max_chunksize=100)
    return {"parquet-bomb": ("application/vnd.apache.parquet", parquet),
            "ipc-bomb": ("application/vnd.apache.arrow.stream", sink.getvalue()),
            "json-bomb": ("application/json",
                          b'{"columns": {"score": [' + b"1," * 20_000_000 + b"1]}}")}


def send_unfinished_values(port: int, clients: int = 6, megabytes: int = 150) -> tuple[list, int]:
    """`clients` RESP connections, each announcing a 200 MiB SET value and sending `megabytes`
    MiB of it, never finishing it: what client memory limits must bound. Returns the connections
    (still open: the caller closes them) and how many sends the server refused (it closed them)."""
    import socket

    conns = []
    for _ in range(clients):
        conn = socket.create_connection(("127.0.0.1", port))
        conn.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (200 << 20))
        conns.append(conn)
    chunk = b"y" * (1 << 20)
    refused = 0
    for _ in range(megabytes):
        for conn in conns:
            try:
                conn.sendall(chunk)
            except OSError:
                refused += 1
    return conns, refused
