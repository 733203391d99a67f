"""quiver.aio: the remote clients for asyncio, same results as the sync ones."""

import asyncio

import numpy as np
import pyarrow as pa
import pytest

import quiver
import quiver.aio


@pytest.mark.parametrize("kind", ["http", "flight"])
def test_async_client_does_everything(quiverd, name, kind):
    url = quiverd.url if kind == "http" else quiverd.flight_url

    async def scenario():
        async with await quiver.aio.connect(url) as db:
            assert db.backend == kind
            await db.create_table(name, pa.schema([("id", pa.int64()), ("x", pa.float32())]),
                                  key="id")
            assert name in await db.list_tables()
            assert (await db.schema(name)).field("x").type == pa.float32()
            assert await db.write(name, {"id": [1, 2, 3], "x": [0.5, 1.5, 2.5]}) == (3, 0)
            # Several reads in flight at once.
            results = await asyncio.gather(*[db.read(name, [k, 9]) for k in (1, 2, 3)])
            assert [r.to_numpy()[0, 0] for r in results] == [0.5, 1.5, 2.5]
            assert all(np.isnan(r.to_numpy()[1, 0]) for r in results)
            assert await db.delete(name, [1]) == 1
            with pytest.raises(quiver.TableNotFound, match="does not exist"):
                await db.read(name + "_nope", [1])
            with pytest.raises(quiver.SchemaError, match="cannot store utf8 as float32"):
                await db.write(name, {"id": [1], "x": ["text"]})
            await db.drop_table(name)

    asyncio.run(scenario())
