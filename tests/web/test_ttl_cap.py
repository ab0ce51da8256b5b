"""TTLs are capped at 100 years (SPEC "Value formats"), and an expiry stored before the cap
cannot take listings down.

A TTL of `99999999999999999999999d` used to be stored, then answered 500 (its expiry is no
date), and from then on every listing, API page and DELETE that showed it failed too.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import ClientResponse, FormData

from artifactd.store.filesystem import FilesystemStore
from tests.web.conftest import Client, store_bytes

HUGE_TTLS = ["99999999999999999999999d", "99999999999999d", "36526d", "1\u017f", "1e9"]


async def assert_nothing_stored(client: Client, storage_root: Path, path: str) -> None:
    assert not (storage_root / path).exists()
    assert (await client.get(f"/api/v1/artifacts/{path}")).status == 404


async def assert_bad_ttl(response: ClientResponse) -> None:
    assert response.status == 400, await response.text()
    body = await response.json()
    assert body["status"] == 400
    assert "duration" in body["error"]


@pytest.mark.parametrize("ttl", HUGE_TTLS)
async def test_a_huge_ttl_header_is_refused_and_nothing_is_stored(
    client: Client, storage_root: Path, ttl: str
) -> None:
    resp = await client.put("/files/t/huge", data=b"x", headers={"X-Artifact-TTL": ttl})
    await assert_bad_ttl(resp)
    await assert_nothing_stored(client, storage_root, "t/huge")


@pytest.mark.parametrize("ttl", HUGE_TTLS)
async def test_a_huge_ttl_query_is_refused_and_nothing_is_stored(
    client: Client, storage_root: Path, ttl: str
) -> None:
    resp = await client.put("/files/t/huge", params={"ttl": ttl}, data=b"x")
    await assert_bad_ttl(resp)
    await assert_nothing_stored(client, storage_root, "t/huge")


async def test_a_huge_ttl_form_field_is_refused_and_nothing_is_stored(
    client: Client, storage_root: Path
) -> None:
    form = FormData()
    form.add_field("ttl", "99999999999999999999999d")
    form.add_field("file", b"x", filename="huge")
    resp = await client.post("/files/t/", data=form, headers={"Accept": "application/json"})
    await assert_bad_ttl(resp)
    await assert_nothing_stored(client, storage_root, "t/huge")


async def test_a_ttl_of_100_years_is_kept(client: Client) -> None:
    resp = await client.put("/files/t/long", data=b"x", headers={"X-Artifact-TTL": "36525d"})
    assert resp.status == 201, await resp.text()
    expires_at = (await resp.json())["expires_at"]
    assert int(expires_at[:4]) - datetime.now(UTC).year in (99, 100)


@pytest.fixture
async def absurd(fs_store: FilesystemStore) -> str:
    """An artifact whose expiry was stored by a server without the cap (now + 10^14 days)."""
    await store_bytes(fs_store, "old/absurd.bin", b"absurd", expires_at=8.64e18)
    return "old/absurd.bin"


async def test_an_absurd_stored_expiry_does_not_take_listings_down(
    client: Client, absurd: str
) -> None:
    listing = await client.get("/files/old/?format=json")
    assert listing.status == 200
    (entry,) = (await listing.json())["entries"]
    assert entry["expires_at"] == "9999-12-31T23:59:59Z"
    page = await client.get("/files/old/", headers={"Accept": "text/html"})
    assert page.status == 200
    assert "9999-12-31 23:59:59" in await page.text()
    api = await client.get("/api/v1/artifacts")
    assert api.status == 200
    paths = {a["path"]: a["expires_at"] for a in (await api.json())["artifacts"]}
    assert paths[absurd] == "9999-12-31T23:59:59Z"
    one = await client.get(f"/api/v1/artifacts/{absurd}")
    assert (one.status, (await one.json())["expires_at"]) == (200, "9999-12-31T23:59:59Z")
    assert (await client.get("/api/v1/stats")).status == 200
    assert (await client.get(f"/files/{absurd}")).status == 200


async def test_an_artifact_with_an_absurd_expiry_can_be_deleted(
    client: Client, absurd: str
) -> None:
    events = await client.get("/api/v1/events")
    assert (await client.delete(f"/files/{absurd}")).status == 204
    published = b""
    while b"event: deleted" not in published:
        published += await asyncio.wait_for(events.content.readuntil(b"\n\n"), 5)
    assert b'"expires_at":"9999-12-31T23:59:59Z"' in published
    events.close()


async def test_an_artifact_with_an_absurd_expiry_can_be_replaced(
    client: Client, absurd: str
) -> None:
    resp = await client.put(f"/files/{absurd}", data=b"new", headers={"X-Artifact-TTL": "1d"})
    assert resp.status == 200, await resp.text()
