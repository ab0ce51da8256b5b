"""Policies per path prefix over HTTP (SPEC "Lifecycle"): the ttl and max_ttl of uploads
under a prefix, and immutable refusing overwrites there only, for every way of writing:
PUT, form POST, WebDAV COPY/MOVE, Turborepo's and Nx's PUTs."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData

from artifactd.options import Policies
from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.web.app import create_app
from tests.web.conftest import Client, ClientFactory

DAY = 86400.0
POLICIES = (
    "cache/:ttl=1d,max_ttl=7d;"
    "release/:immutable=true;"
    "cache/keep/:ttl=never;"
    "turbo/:ttl=2d,immutable=true;"
    "nx/:max_ttl=3d"
)


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path
) -> Client:
    settings = Settings(root=storage_root, default_ttl=30 * DAY, policies=Policies().read(POLICIES))
    return await aiohttp_client(create_app(settings, fs_store))


async def document(client: Client, path: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/artifacts/{path}")
    assert response.status == 200, path
    result: dict[str, Any] = await response.json()
    return result


async def ttl_of(client: Client, path: str) -> float | None:
    """Seconds from now until `path` expires (None: never)."""
    expires_at = (await document(client, path))["expires_at"]
    if expires_at is None:
        return None
    return datetime.fromisoformat(expires_at.replace("Z", "+00:00")).timestamp() - time.time()


def about(seconds: float | None) -> Any:
    return None if seconds is None else pytest.approx(seconds, abs=60)


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        pytest.param("cache/a", {}, DAY, id="the prefix's ttl instead of --default-ttl"),
        pytest.param("elsewhere/a", {}, 30 * DAY, id="outside every prefix: --default-ttl"),
        pytest.param("release/a", {}, 30 * DAY, id="a policy without ttl: --default-ttl"),
        pytest.param("cache/a", {"X-Artifact-TTL": "2d"}, 2 * DAY, id="a request within max"),
        pytest.param("cache/a", {"X-Artifact-TTL": "30d"}, 7 * DAY, id="max_ttl clamps"),
        pytest.param("cache/a", {"X-Artifact-TTL": "never"}, 7 * DAY, id="max_ttl clamps never"),
        pytest.param("cache/keep/a", {}, None, id="the longest prefix wins"),
        pytest.param("cache/keep/a", {"X-Artifact-TTL": "30d"}, 30 * DAY, id="alone: no cap"),
        pytest.param("cachet/a", {}, 30 * DAY, id="a prefix is a directory"),
        pytest.param("cache", {}, 30 * DAY, id="the prefix's own name is outside it"),
    ],
)
async def test_put_gets_the_ttl_of_its_prefix(
    client: Client, path: str, headers: dict[str, str], expected: float | None
) -> None:
    response = await client.put(f"/files/{path}", data=b"x", headers=headers)
    assert response.status == 201, await response.text()
    assert await ttl_of(client, path) == about(expected)


async def test_max_ttl_clamps_a_ttl_asked_in_the_query(client: Client) -> None:
    response = await client.put("/files/cache/q", params={"ttl": "90d"}, data=b"x")
    assert response.status == 201
    assert await ttl_of(client, "cache/q") == about(7 * DAY)


async def test_form_post_files_get_their_own_paths_policy(client: Client) -> None:
    form = FormData()
    form.add_field("ttl", "never")
    form.add_field("file", b"one", filename="a.txt")
    response = await client.post("/files/cache/", data=form, headers={"Accept": "application/json"})
    assert response.status == 201, await response.text()
    assert await ttl_of(client, "cache/a.txt") == about(7 * DAY)
    form = FormData()
    form.add_field("file", b"two", filename="b.txt")
    response = await client.post(
        "/files/release/", data=form, headers={"Accept": "application/json"}
    )
    assert response.status == 201
    assert await ttl_of(client, "release/b.txt") == about(30 * DAY)


async def test_immutable_refuses_overwrites_under_its_prefix_only(client: Client) -> None:
    for path in ("release/v1/app.tar", "cache/app.tar", "release-notes/app.tar"):
        assert (await client.put(f"/files/{path}", data=b"one")).status == 201
    again = await client.put("/files/release/v1/app.tar", data=b"two")
    assert again.status == 409
    assert "release/" in (await again.json())["error"]
    assert await (await client.get("/files/release/v1/app.tar")).read() == b"one"
    assert (await client.put("/files/cache/app.tar", data=b"two")).status == 200
    assert (await client.put("/files/release-notes/app.tar", data=b"two")).status == 200
    # A new path under the prefix is written; deleting stays allowed, as with --immutable.
    assert (await client.put("/files/release/v2/app.tar", data=b"two")).status == 201
    assert (await client.delete("/files/release/v1/app.tar")).status == 204


async def test_immutable_refuses_before_the_body_with_expect_continue(client: Client) -> None:
    assert (await client.put("/files/release/a", data=b"one")).status == 201
    response = await client.put("/files/release/a", data=b"two", headers={"Expect": "100-continue"})
    assert response.status == 409


async def test_a_form_post_obeys_immutable(client: Client) -> None:
    assert (await client.put("/files/release/a.txt", data=b"one")).status == 201
    form = FormData()
    form.add_field("file", b"two", filename="a.txt")
    response = await client.post(
        "/files/release/", data=form, headers={"Accept": "application/json"}
    )
    assert response.status == 409
    assert await (await client.get("/files/release/a.txt")).read() == b"one"


def destination(client: Client, path: str) -> dict[str, str]:
    return {"Destination": str(client.make_url(path)), "Overwrite": "T"}


@pytest.mark.parametrize("method", ["COPY", "MOVE"])
async def test_dav_copy_and_move_obey_immutable_at_the_destination(
    client: Client, method: str
) -> None:
    assert (await client.put("/files/release/a", data=b"kept")).status == 201
    assert (await client.put("/files/tmp/a", data=b"new")).status == 201
    response = await client.request(
        method, "/files/tmp/a", headers=destination(client, "/files/release/a")
    )
    assert response.status == 409
    assert await (await client.get("/files/release/a")).read() == b"kept"
    assert (await client.get("/files/tmp/a")).status == 200
    # A tree replaced would replace the files under the prefix: refused too.
    response = await client.request(
        method, "/files/tmp", headers=destination(client, "/files/release")
    )
    assert response.status == 409
    assert await (await client.get("/files/release/a")).read() == b"kept"
    # Elsewhere the same overwrite is done.
    assert (await client.put("/files/cache/a", data=b"old")).status == 201
    response = await client.request(
        method, "/files/tmp/a", headers=destination(client, "/files/cache/a")
    )
    assert response.status == 204
    assert await (await client.get("/files/cache/a")).read() == b"new"


async def test_dav_copy_into_a_prefix_is_clamped_to_its_max_ttl(client: Client) -> None:
    put = await client.put("/files/tmp/a", data=b"x", headers={"X-Artifact-TTL": "never"})
    assert put.status == 201
    for parent in ("cache", "elsewhere"):
        assert (await client.request("MKCOL", f"/files/{parent}")).status == 201
    response = await client.request(
        "COPY", "/files/tmp/a", headers=destination(client, "/files/cache/a")
    )
    assert response.status == 201
    assert await ttl_of(client, "cache/a") == about(7 * DAY)
    response = await client.request(
        "COPY", "/files/tmp/a", headers=destination(client, "/files/elsewhere/a")
    )
    assert response.status == 201
    assert await ttl_of(client, "elsewhere/a") is None  # a copy keeps its source's expiry


async def test_turbo_and_nx_writes_obey_their_prefixes_policies(client: Client) -> None:
    url = "/turbo/v8/artifacts/0123456789abcdef"
    assert (await client.put(url, data=b"one")).status == 202
    assert await ttl_of(client, "turbo/default/0123456789abcdef") == about(2 * DAY)
    assert (await client.put(url, data=b"two")).status == 409
    nx = "/nx/v1/cache/0123456789abcdef"
    assert (await client.put(nx, data=b"one", headers={"X-Artifact-TTL": "30d"})).status == 202
    assert await ttl_of(client, "nx/0123456789abcdef") == about(3 * DAY)
