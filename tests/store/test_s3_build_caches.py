"""The /turbo and /nx caches over an S3 bucket (SeaweedFS): entries, their kept headers and
Nx's write-once rule hold on that backend too."""

from __future__ import annotations

from pathlib import Path

from artifactd.settings import Settings
from artifactd.web.app import create_app
from tests.seaweed import (  # the fixtures register as `seaweed` and `s3_bucket`
    Seaweed,
    open_s3_store,
    s3_bucket_fixture,  # noqa: F401
    seaweed_fixture,  # noqa: F401
)
from tests.web.conftest import ClientFactory

BODY = bytes(range(256)) * 64


async def test_turbo_and_nx_entries_on_s3(
    seaweed: Seaweed, s3_bucket: str, aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    backend = await open_s3_store(seaweed, s3_bucket)
    client = await aiohttp_client(create_app(Settings(root=tmp_path), backend))

    turbo = "/turbo/v8/artifacts/0123456789abcdef?slug=acme"
    headers = {"x-artifact-duration": "250", "x-artifact-tag": "dGFn"}
    assert (await client.put(turbo, data=BODY, headers=headers)).status == 202
    got = await client.get(turbo)
    assert (got.status, await got.read()) == (200, BODY)
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert (got.headers["x-artifact-duration"], got.headers["x-artifact-tag"]) == ("250", "dGFn")
    query = await client.post(
        "/turbo/v8/artifacts?slug=acme", json={"hashes": ["0123456789abcdef"]}
    )
    assert await query.json() == {
        "0123456789abcdef": {"size": len(BODY), "taskDurationMs": 250, "tag": "dGFn"}
    }

    nx = "/nx/v1/cache/987654321"
    assert (await client.put(nx, data=BODY)).status == 202
    assert (await client.put(nx, data=b"other")).status == 409
    assert await (await client.get(nx)).read() == BODY
    assert await (await client.get("/files/nx/987654321")).read() == BODY
