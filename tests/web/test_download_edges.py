"""Download and listing edges, in-process: Vary on listings, stale `.gz` siblings,
If-Range dates of versions changed within a second, digests asked for with Want-Digest
and Want-Repr-Digest, Content-Disposition for names a URL cannot carry as they are."""

from __future__ import annotations

import asyncio
import time

from tests.web.conftest import Client


async def test_listings_vary_on_accept_whichever_form_they_answer(client: Client) -> None:
    for headers in ({"Accept": "text/html"}, {"Accept": "application/json"}, {}):
        resp = await client.get("/files/docs/", headers=headers)
        assert resp.status == 200
        assert "Accept" in [v.strip() for v in resp.headers["Vary"].split(",")]
    by_query = await client.get("/files/?format=json")
    assert "Accept" in by_query.headers["Vary"]


async def within_one_second() -> None:
    """Wait for the start of a second, so a few quick requests share it."""
    await asyncio.sleep(1 - time.time() % 1 + 0.01)


async def test_if_range_date_of_a_version_replaced_within_the_second_gets_the_whole_body(
    client: Client,
) -> None:
    """A resume with If-Range: <date> after a same-second replacement must not glue the
    first version's head to the second's tail (RFC 9110 §13.1.5, §8.8.2.2)."""
    first, second = b"A" * 5000, b"B" * 5000
    for _attempt in range(5):
        await within_one_second()
        assert (await client.put("/files/glue.bin", data=first)).status in (200, 201)
        head = await client.get("/files/glue.bin", headers={"Range": "bytes=0-999"})
        assert head.status == 206
        last_modified = head.headers["Last-Modified"]
        assert await head.read() == first[:1000]
        assert (await client.put("/files/glue.bin", data=second)).status == 200
        resumed = await client.get(
            "/files/glue.bin", headers={"Range": "bytes=1000-", "If-Range": last_modified}
        )
        body = await resumed.read()
        if time.time() % 1 > 0.9:
            continue  # too close to the next second to be sure it was shared: again
        assert resumed.status == 200
        assert body == second
        return
    raise AssertionError("never managed three requests within one second")


async def test_if_range_date_of_a_settled_version_still_resumes(client: Client) -> None:
    data = bytes(range(256)) * 20
    assert (await client.put("/files/settled.bin", data=data)).status == 201
    await asyncio.sleep(1.05)  # its Last-Modified second is over: a strong validator now
    first = await client.get("/files/settled.bin", headers={"Range": "bytes=0-9"})
    resumed = await client.get(
        "/files/settled.bin",
        headers={"Range": "bytes=10-", "If-Range": first.headers["Last-Modified"]},
    )
    assert resumed.status == 206
    assert await resumed.read() == data[10:]
