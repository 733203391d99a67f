"""The same calls against a running quiverd, over HTTP, Arrow Flight and asyncio.

Start one with `make serve`; QUIVER_HTTP_URL and QUIVER_FLIGHT_URL point elsewhere.
"""

import asyncio
import os

import polars as pl
import pyarrow as pa

import quiver
import quiver.aio

HTTP = os.environ.get("QUIVER_HTTP_URL", "http://127.0.0.1:8080")
FLIGHT = os.environ.get("QUIVER_FLIGHT_URL", "grpc://127.0.0.1:8081")

with quiver.connect(HTTP) as db:
    if "docs" in db.list_tables():
        db.drop_table("docs")
    db.create_table("docs", pa.schema([("doc_id", pa.string()), ("score", pa.float32()),
                                       ("title", pa.string())]), key="doc_id")
    db.write("docs", pl.DataFrame({"doc_id": ["a", "b"], "score": [0.5, 0.7],
                                   "title": ["first", "second"]}))

with quiver.connect(FLIGHT) as db:  # the same table, over Arrow Flight
    frame = db.read("docs", ["b", "x", "a"]).to_polars()
    print(frame)
    assert frame["title"].to_list() == ["second", None, "first"]


async def main():
    async with await quiver.aio.connect(HTTP) as db:
        results = await asyncio.gather(db.read("docs", ["a"]), db.read("docs", ["b"]))
        print([r.to_pandas()["score"].tolist() for r in results])
        try:
            await db.read("no_such_table", ["a"])
        except quiver.TableNotFound as error:
            print("as expected:", error)
        await db.drop_table("docs")


asyncio.run(main())
