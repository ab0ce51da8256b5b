"""Two in-process artifactd apps (two "nodes") over one SeaweedFS bucket, through HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from artifactd.settings import Settings
from artifactd.web.app import create_app
from tests.seaweed import (  # the fixtures register as `seaweed` and `s3_bucket`
    Seaweed,
    open_s3_store,
    s3_bucket_fixture,  # noqa: F401
    seaweed_fixture,  # noqa: F401
)
from tests.web.test_expect_continue import expect_exchange

ClientFactory = Callable[..., Awaitable[TestClient]]  # type: ignore[type-arg]


async def node(
    aiohttp_client: ClientFactory, seaweed: Seaweed, bucket: str, root: Path, **store: Any
) -> TestClient:  # type: ignore[type-arg]
    root.mkdir()
    backend = await open_s3_store(seaweed, bucket, **store)
    return await aiohttp_client(create_app(Settings(root=root), backend))


async def test_two_nodes_serve_one_bucket_with_the_same_etags_and_ranges(
    seaweed: Seaweed, s3_bucket: str, aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    a = await node(aiohttp_client, seaweed, s3_bucket, tmp_path / "a")
    b = await node(
        aiohttp_client,
        seaweed,
        s3_bucket,
        tmp_path / "b",
        cache_dir=tmp_path / "cache-b",
        cache_fill_after_opens=1,
    )
    data = bytes(range(256)) * 400
    put = await a.put("/files/ci/7/app.bin", data=data)
    assert put.status == 201, await put.text()
    etag = put.headers["ETag"]

    for _ in range(2):  # the second GET on node B may come from its local cache
        whole = await b.get("/files/ci/7/app.bin")
        assert (whole.status, whole.headers["ETag"]) == (200, etag)
        assert whole.headers["X-Checksum-Sha256"] == hashlib.sha256(data).hexdigest()
        assert await whole.read() == data

    ranged = await b.get("/files/ci/7/app.bin", headers={"Range": "bytes=1000-1009"})
    assert (ranged.status, await ranged.read()) == (206, data[1000:1010])
    listing = await b.get("/files/ci/7/", headers={"Accept": "application/json"})
    assert [e["name"] for e in (await listing.json())["entries"]] == ["app.bin"]

    deleted = await b.delete("/files/ci/7/app.bin")
    assert deleted.status == 204
    assert (await a.get("/files/ci/7/app.bin")).status == 404


async def test_a_put_onto_a_directory_is_refused_with_or_without_conditions(
    seaweed: Seaweed, s3_bucket: str, aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    # The directory is judged by the commit only (Store.current does not list), after the
    # body: still a 409, and the directory untouched.
    a = await node(aiohttp_client, seaweed, s3_bucket, tmp_path / "a")
    assert (await a.put("/files/ci/7/app.bin", data=b"x")).status == 201
    for headers in ({}, {"If-None-Match": "*"}, {"Expect": "100-continue"}):
        refused = await a.put("/files/ci/7", data=b"onto a directory", headers=headers)
        assert refused.status == 409, await refused.text()
        assert (await refused.json())["error"].startswith("path is a directory")
    listing = await a.get("/files/ci/7/", headers={"Accept": "application/json"})
    assert [e["name"] for e in (await listing.json())["entries"]] == ["app.bin"]
    # With `Expect: 100-continue` both 409s come before the body (SPEC "Build caches").
    assert await expect_exchange(a, "PUT", "/files/ci/7") == b"409"
    assert await expect_exchange(a, "PUT", "/files/ci/7/app.bin/below") == b"409"


async def test_a_file_is_put_where_a_directory_was_deleted(
    seaweed: Seaweed, s3_bucket: str, aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    # A CI job stores `out/x`, deletes it, and later stores `out` as a file; or deletes or
    # moves a whole directory (WebDAV's DELETE, MOVE) and puts a file at its path.
    a = await node(aiohttp_client, seaweed, s3_bucket, tmp_path / "a")
    assert (await a.put("/files/out/x", data=b"x")).status == 201
    assert (await a.delete("/files/out/x")).status == 204
    for path in ("tree/x", "tree/sub/y", "tree/sub/deeper/z"):
        assert (await a.put(f"/files/{path}", data=b"x")).status == 201
    assert (await a.delete("/files/tree")).status == 204
    assert (await a.put("/files/mv/sub/x", data=b"x")).status == 201
    moved = await a.request("MOVE", "/files/mv", headers={"Destination": "/files/moved"})
    assert moved.status == 201
    listing = await a.get("/files/", headers={"Accept": "application/json"})
    # The collection's DELETE and MOVE removed the directories SeaweedFS keeps (a plain
    # DELETE leaves `out` listed until SeaweedFS drops it, minutes later).
    assert [e["name"] for e in (await listing.json())["entries"] if e["name"] != "out"] == ["moved"]
    for path in ("out", "tree", "mv"):
        put = await a.put(f"/files/{path}", data=f"the file {path}".encode())
        assert put.status == 201, await put.text()
        got = await a.get(f"/files/{path}")
        assert (got.status, await got.read()) == (200, f"the file {path}".encode())
