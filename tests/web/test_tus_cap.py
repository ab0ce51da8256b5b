"""--max-open-uploads: creation beyond a token's open uploads is 429 (JSON); completed,
deleted and expired ones do not count; every client without a token is one owner."""

from __future__ import annotations

import asyncio
import os
import time
import types
from pathlib import Path

import pytest

from artifactd.resumable import filesystem
from artifactd.resumable.factory import resources_for
from artifactd.resumable.owners import OWNERS_DIR, owner_key
from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.tokens import TokenStore
from artifactd.web.app import create_app
from tests.web.conftest import Client, ClientFactory, bearer
from tests.web.test_tus import OCTETS, TUS, metadata

CAP = 2


async def try_create(client: Client, token: dict[str, str], length: int = 4) -> tuple[int, str]:
    headers = {
        **TUS,
        **token,
        "Upload-Length": str(length),
        "Upload-Metadata": metadata(path="big/a.bin"),
    }
    response = await client.post("/uploads/", headers=headers)
    if response.status == 429:
        assert response.content_type == "application/json"
        assert (await response.json())["status"] == 429
        return 429, ""
    assert response.status == 201, await response.text()
    return 201, response.headers["Location"]


async def capped_client(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path
) -> Client:
    settings = Settings(root=storage_root, max_open_uploads=CAP)
    return await aiohttp_client(create_app(settings, fs_store))


@pytest.fixture
def tokens(storage_root: Path) -> tuple[dict[str, str], dict[str, str]]:
    store = TokenStore(storage_root)
    return bearer(store.add("ci-a", "write")), bearer(store.add("ci-b", "write"))


async def test_creation_beyond_the_cap_is_429_per_token(
    aiohttp_client: ClientFactory,
    fs_store: FilesystemStore,
    storage_root: Path,
    tokens: tuple[dict[str, str], dict[str, str]],
) -> None:
    a, b = tokens
    client = await capped_client(aiohttp_client, fs_store, storage_root)
    first = (await try_create(client, a))[1]
    second = (await try_create(client, a))[1]
    assert (await try_create(client, a))[0] == 429
    assert (await try_create(client, b))[0] == 201  # another token has its own places

    # A completed upload gives its place back...
    headers = {**TUS, **OCTETS, **a, "Upload-Offset": "0"}
    assert (await client.patch(first, headers=headers, data=b"done")).status == 204
    third = (await try_create(client, a))[1]
    assert (await try_create(client, a))[0] == 429
    # ...and so does a deleted one.
    assert (await client.delete(second, headers={**TUS, **a})).status == 204
    assert (await try_create(client, a))[0] == 201
    assert (await try_create(client, a))[0] == 429
    assert third

    # Finished uploads' markers went when counted: the count reads at most CAP + 1 files.
    folder = fs_store.state_dir / OWNERS_DIR / owner_key("ci-a")
    assert len(os.listdir(folder)) <= CAP + 1


async def test_expired_uploads_do_not_count(
    aiohttp_client: ClientFactory,
    fs_store: FilesystemStore,
    storage_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = await capped_client(aiohttp_client, fs_store, storage_root)
    for _ in range(CAP):
        assert (await try_create(client, {}))[0] == 201
    assert (await try_create(client, {}))[0] == 429  # every anonymous client is one owner
    later = time.time() + Settings().upload_expiry + 10
    monkeypatch.setattr(filesystem, "time", types.SimpleNamespace(time=lambda: later))
    assert (await try_create(client, {}))[0] == 201


async def test_the_evictor_prunes_markers_of_finished_uploads(fs_store: FilesystemStore) -> None:
    resources = resources_for(fs_store)
    folder = fs_store.state_dir / OWNERS_DIR / owner_key(None)
    resource = await resources.create(
        "a", owner=None, length=1, expires_at=time.time() + 60, open_cap=CAP
    )
    await resources.remove(resource.id)
    assert len(await asyncio.to_thread(os.listdir, folder)) == 1
    await resources.remove_expired()  # what the evictor runs
    assert await asyncio.to_thread(os.listdir, folder) == []
