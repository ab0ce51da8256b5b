"""How many S3 requests one small request to artifactd costs, per S3 operation, against a
real SeaweedFS: the numbers docs/storage-s3.md states ("Requests per operation")."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from artifactd.settings import Settings
from artifactd.store.s3 import S3Store
from artifactd.web.app import create_app
from tests.seaweed import (  # the fixtures register as `seaweed` and `s3_bucket`
    Seaweed,
    open_s3_store,
    s3_bucket_fixture,  # noqa: F401
    seaweed_fixture,  # noqa: F401
)
from tests.web.conftest import Client, ClientFactory

SMALL = b"x" * 4096


class RequestCounter:
    """Every S3 request a store sends, by operation name (botocore's `before-send` fires
    once per HTTP request, retries included)."""

    def __init__(self, store: S3Store) -> None:
        self.sent: Counter[str] = Counter()
        self.lease_released = asyncio.Event()
        self._lease_url = f"/{store.layout.lease_key}"
        store.bucket.client.meta.events.register("before-send.s3", self._count)

    def _count(self, event_name: str, request: Any, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        self.sent[operation] += 1
        if operation == "DeleteObject" and request.url.endswith(self._lease_url):
            self.lease_released.set()

    def take(self) -> dict[str, int]:
        """The counts since the last call."""
        counts, self.sent = dict(self.sent), Counter()
        return counts


@pytest.fixture
async def node(
    seaweed: Seaweed, s3_bucket: str, aiohttp_client: ClientFactory, tmp_path: Path
) -> AsyncIterator[tuple[Client, RequestCounter]]:
    store = await open_s3_store(seaweed, s3_bucket)
    # Whatever the machine's load, each request comes within the seconds for which what a
    # HEAD saw may stand in for a commit's own (Objects.seen), and parents are trusted.
    store.objects.clock = store.writes.directories.clock = lambda: 0.0
    counter = RequestCounter(store)
    client = await aiohttp_client(create_app(Settings(root=tmp_path), store))
    # The evictor's first pass runs at startup: its requests are nobody's upload.
    await asyncio.wait_for(counter.lease_released.wait(), 30)
    counter.take()
    yield client, counter


async def test_requests_per_small_put_delete_and_get(node: tuple[Client, RequestCounter]) -> None:
    client, counter = node
    response = await client.put("/files/ci/7/app.bin", data=SMALL)
    assert response.status == 201, await response.text()
    # The path (absent), then at once: is it a directory, is `ci` or `ci/7` a file.
    assert counter.take() == {"HeadObject": 3, "ListObjectsV2": 1, "PutObject": 1}

    response = await client.put("/files/ci/7/lib.bin", data=SMALL)
    assert response.status == 201, await response.text()
    # `ci` and `ci/7` hold the object just committed: not looked at again.
    assert counter.take() == {"HeadObject": 1, "ListObjectsV2": 1, "PutObject": 1}

    response = await client.put("/files/ci/7/once.bin", data=SMALL, headers={"If-None-Match": "*"})
    assert response.status == 201, await response.text()
    # The handler's look before the body (Store.current: a HEAD) stands in for the
    # commit's HEAD, and the directory is judged once, by the commit.
    assert counter.take() == {"HeadObject": 1, "ListObjectsV2": 1, "PutObject": 1}

    response = await client.put("/files/ci/7/app.bin", data=SMALL)  # the same bytes
    assert response.status == 200, await response.text()
    assert counter.take() == {"HeadObject": 1}

    response = await client.put("/files/ci/7/app.bin", data=SMALL + b"!")
    assert response.status == 200, await response.text()
    # The HEAD just above stands in for the commit's: the write's If-Match checks it.
    assert counter.take() == {"PutObject": 1}

    response = await client.get("/files/ci/7/app.bin")
    assert (response.status, await response.read()) == (200, SMALL + b"!")
    assert counter.take() == {"HeadObject": 1, "GetObject": 1}

    response = await client.delete("/files/ci/7/app.bin")
    assert response.status == 204, await response.text()
    assert counter.take() == {"HeadObject": 1, "DeleteObject": 1}


async def test_requests_per_put_of_a_file_where_a_directory_was(
    node: tuple[Client, RequestCounter],
) -> None:
    client, counter = node
    assert (await client.put("/files/out/x", data=SMALL)).status == 201
    assert (await client.delete("/files/out/x")).status == 204
    counter.take()
    response = await client.put("/files/out", data=SMALL)
    assert response.status == 201, await response.text()
    # The HEAD of `out` made when `out/x` was created (a parent then) stands in for the
    # first attempt's: the listing finds nothing under `out/`, and SeaweedFS, which keeps
    # the emptied directory `out`, refuses the creation (412). The second attempt looks
    # again (HEAD, listing), lists the leftover to remove it (ListObjectsV2, DeleteObject
    # `out/`), and creates the key.
    assert counter.take() == {
        "HeadObject": 1,
        "ListObjectsV2": 3,
        "PutObject": 2,
        "DeleteObject": 1,
    }
    assert (await client.get("/files/out")).status == 200


async def test_requests_per_miss(node: tuple[Client, RequestCounter]) -> None:
    client, counter = node
    assert (await client.put("/files/ccache/ab/entry", data=SMALL)).status == 201
    counter.take()
    # Under /files/ a directory answers 301 (to its listing), a miss 404: the listing
    # tells them apart.
    for method in ("GET", "HEAD"):
        response = await client.request(method, "/files/ccache/ab/absent", allow_redirects=False)
        assert response.status == 404
        assert counter.take() == {"HeadObject": 1, "ListObjectsV2": 1}
    assert (await client.get("/files/ccache/ab", allow_redirects=False)).status == 301
    counter.take()
    # The build caches' own APIs answer 404 for a directory too: one HEAD per miss.
    turbo = "/turbo/v8/artifacts/0123456789abcdef"
    for method, url in (("GET", turbo), ("HEAD", turbo), ("GET", "/nx/v1/cache/12345")):
        response = await client.request(method, url)
        assert response.status == 404, await response.text()
        assert counter.take() == {"HeadObject": 1}
    response = await client.post("/turbo/v8/artifacts", json={"hashes": ["0123456789abcdef"]})
    assert (response.status, await response.json()) == (200, {"0123456789abcdef": None})
    assert counter.take() == {"HeadObject": 1}
    # A compressible file asked for gzip: its `.gz` sibling is looked for with one HEAD.
    assert (await client.put("/files/logs/build.log", data=b"log line\n" * 500)).status == 201
    counter.take()
    response = await client.get("/files/logs/build.log", headers={"Accept-Encoding": "gzip"})
    assert (response.status, response.headers.get("Content-Encoding")) == (200, "gzip")
    assert counter.take() == {"HeadObject": 2, "GetObject": 1}
