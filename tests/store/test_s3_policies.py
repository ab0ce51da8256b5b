"""Policies per path prefix over an S3 bucket (SeaweedFS): a prefix's ttl, max_ttl and
immutable on writes, and its max_size in an eviction pass, hold on that backend too."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from artifactd.evictor import Evictor
from artifactd.options import Policies
from artifactd.settings import Settings
from artifactd.web.app import create_app
from tests.seaweed import (  # the fixtures register as `seaweed` and `s3_bucket`
    Seaweed,
    open_s3_store,
    s3_bucket_fixture,  # noqa: F401
    seaweed_fixture,  # noqa: F401
)
from tests.web.conftest import ClientFactory

DAY = 86400


async def test_policies_on_s3(
    seaweed: Seaweed, s3_bucket: str, aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    backend = await open_s3_store(seaweed, s3_bucket)
    policies = Policies().read("cache/:max_ttl=1d,max_size=2KiB;release/:immutable=true")
    settings = Settings(root=tmp_path, policies=policies)
    client = await aiohttp_client(create_app(settings, backend))

    assert (await client.put("/files/release/v1", data=b"r" * 4096)).status == 201
    assert (await client.put("/files/release/v1", data=b"other")).status == 409
    for name in ("a", "b", "c"):
        put = await client.put(f"/files/cache/{name}", data=b"c" * 1024)
        assert put.status == 201
        await asyncio.sleep(0.02)
    expires_at = (await backend.info("cache/a")).expires_at
    assert expires_at is not None and expires_at <= time.time() + DAY

    report = await Evictor(backend, policies=policies).run_once()
    assert report.over_size == ["cache/a"]
    assert report.over_prefix_size == {"cache/a": "cache/"}
    assert (await client.get("/files/cache/a")).status == 404
    for path in ("cache/b", "cache/c", "release/v1"):
        assert (await client.get(f"/files/{path}")).status == 200
