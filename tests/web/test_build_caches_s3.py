"""The build-cache rules on the S3 backend (SPEC "Build caches", "Policies per path prefix"),
in-process against a real SeaweedFS: content addresses, re-uploads that renew only the TTL,
Expect refusals, Turborepo's and Nx's APIs, and policies (ttl, max_ttl, immutable and a
prefix's LRU budget). The same rules on the filesystem are in test_build_cache_uploads.py,
test_turbo.py, test_nx.py and test_policies.py."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from artifactd.evictor import Evictor
from artifactd.options import Policies
from artifactd.settings import Settings
from artifactd.store.s3 import S3Store
from artifactd.web.app import create_app
from tests.seaweed import (  # the fixtures register as `seaweed` and `s3_bucket`
    Seaweed,
    open_s3_store,
    s3_bucket_fixture,  # noqa: F401
    seaweed_fixture,  # noqa: F401
)
from tests.web.conftest import Client, ClientFactory, sha256_hex

DAY = 86400.0
POLICIES = "bazel/:ttl=1d,max_ttl=7d,max_size=2KiB;release/:immutable=true"


@pytest.fixture
async def s3_store(seaweed: Seaweed, s3_bucket: str) -> AsyncIterator[S3Store]:
    store = await open_s3_store(seaweed, s3_bucket)
    yield store
    await store.close()


@pytest.fixture
async def client(s3_store: S3Store, aiohttp_client: ClientFactory, storage_root: Path) -> Client:
    settings = Settings(root=storage_root, default_ttl=30 * DAY, policies=Policies().read(POLICIES))
    return await aiohttp_client(create_app(settings, s3_store))


async def expires_in(client: Client, path: str) -> float:
    document = await (await client.get(f"/api/v1/artifacts/{path}")).json()
    expires = datetime.fromisoformat(document["expires_at"].replace("Z", "+00:00"))
    return expires.timestamp() - time.time()


async def test_content_addresses_and_re_uploads(client: Client) -> None:
    blob = b"action output" * 100
    name = sha256_hex(blob)
    wrong = await client.put(f"/files/bazel/cas/{sha256_hex(b'other')}", data=blob)
    assert wrong.status == 400
    assert (await client.get(f"/files/bazel/cas/{sha256_hex(b'other')}")).status == 404
    assert (await client.get(f"/files/bazel/cas/{name}")).status == 404  # a miss is 404
    first = await client.put(
        f"/files/bazel/cas/{name}", data=blob, headers={"X-Artifact-TTL": "1h"}
    )
    assert first.status == 201
    assert await expires_in(client, f"bazel/cas/{name}") == pytest.approx(3600, abs=60)
    again = await client.put(f"/files/bazel/cas/{name}", data=blob)  # the policy's ttl: 1d
    assert again.status == 200
    assert again.headers["ETag"] == first.headers["ETag"]
    assert await expires_in(client, f"bazel/cas/{name}") == pytest.approx(DAY, abs=60)
    assert await (await client.get(f"/files/bazel/cas/{name}")).read() == blob


async def test_expect_continue_is_refused_before_the_body(
    s3_store: S3Store, aiohttp_client: ClientFactory, storage_root: Path
) -> None:
    client = await aiohttp_client(
        create_app(Settings(root=storage_root, max_upload_size=1024), s3_store)
    )
    response = await client.put(
        "/files/gradle/big", data=b"x" * 2048, headers={"Expect": "100-continue"}
    )
    assert response.status == 413
    assert (await client.get("/files/gradle/big")).status == 404


async def test_turborepo_and_nx_apis(client: Client) -> None:
    body = b"\x28\xb5\x2f\xfd" + bytes(range(256))
    put = await client.put(
        "/turbo/v8/artifacts/0123abcd", data=body, headers={"x-artifact-duration": "42"}
    )
    assert put.status == 202
    get = await client.get("/turbo/v8/artifacts/0123abcd")
    assert (get.status, await get.read()) == (200, body)
    assert get.headers["x-artifact-duration"] == "42"
    assert (await client.head("/turbo/v8/artifacts/0123abcd")).status == 200
    assert (await client.get("/turbo/v8/artifacts/ffff")).status == 404
    query = await client.post("/turbo/v8/artifacts", json={"hashes": ["0123abcd", "ffff"]})
    found = await query.json()
    assert found["0123abcd"]["size"] == len(body)
    assert found.get("ffff") is None

    assert (await client.put("/nx/v1/cache/1234", data=body)).status == 202
    assert (await client.put("/nx/v1/cache/1234", data=body)).status == 409  # write-once
    nx = await client.get("/nx/v1/cache/1234")
    assert (nx.status, await nx.read()) == (200, body)
    assert (await client.get("/nx/v1/cache/5678")).status == 404


async def test_policies_max_ttl_and_immutable(client: Client) -> None:
    capped = await client.put("/files/bazel/ac/k", data=b"x", headers={"X-Artifact-TTL": "90d"})
    assert capped.status == 201
    assert await expires_in(client, "bazel/ac/k") == pytest.approx(7 * DAY, abs=60)
    assert (await client.put("/files/release/app", data=b"one")).status == 201
    refused = await client.put("/files/release/app", data=b"two")
    assert refused.status == 409
    assert await (await client.get("/files/release/app")).read() == b"one"
    assert (await client.put("/files/other/app", data=b"one")).status == 201
    assert (await client.put("/files/other/app", data=b"two")).status == 200


async def test_a_prefix_budget_evicts_least_recently_used_inside_it_only(
    client: Client, s3_store: S3Store
) -> None:
    for name in ("a", "b", "c"):  # 3 KiB under a 2 KiB budget
        assert (await client.put(f"/files/bazel/cas/{name}", data=b"x" * 1024)).status == 201
        time.sleep(0.01)
    assert (await client.put("/files/elsewhere/big", data=b"y" * 8192)).status == 201
    await client.get("/files/bazel/cas/a")  # now the most recently used
    evictor = Evictor(s3_store, policies=Policies().read(POLICIES))
    report = await evictor.run_once()
    assert report.over_size == ["bazel/cas/b"]
    for path, status in [
        ("bazel/cas/a", 200),
        ("bazel/cas/b", 404),
        ("bazel/cas/c", 200),
        ("elsewhere/big", 200),
    ]:
        assert (await client.get(f"/files/{path}")).status == status, path
