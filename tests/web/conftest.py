"""In-process app fixtures: the real app factory over a real filesystem store."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.web.app import create_app

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]

Auth = Callable[[str], dict[str, str]]

DATA = bytes(range(256)) * 40  # 10240 bytes, every offset distinguishable


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(token: str, user: str = "ci") -> dict[str, str]:
    """HTTP Basic (RFC 7617) with the token as the password, as Gradle, ccache and Bazel
    send it."""
    encoded = base64.b64encode(f"{user}:{token}".encode()).decode("ascii")
    return {"Authorization": f"Basic {encoded}"}


@pytest.fixture(params=["Bearer", "Basic"])
def auth(request: pytest.FixtureRequest) -> Auth:
    """The token's header in each scheme: a test taking it runs for Bearer, then Basic, since
    Basic must work wherever Bearer does."""
    return bearer if request.param == "Bearer" else basic


@pytest.fixture
async def fs_store(storage_root: Path) -> AsyncIterator[FilesystemStore]:
    store = await FilesystemStore.create(storage_root)
    yield store


async def store_bytes(store: FilesystemStore, path: str, data: bytes, **kwargs: object) -> str:
    upload = await store.begin_upload(path, **kwargs)  # type: ignore[arg-type]
    await upload.write(data)
    info, _ = await upload.commit()
    return info.etag


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path
) -> Client:
    await store_bytes(fs_store, "data.bin", DATA)
    await store_bytes(fs_store, "docs/readme.txt", b"read me\n")
    settings = Settings(root=storage_root, max_ranges=16)
    return await aiohttp_client(create_app(settings, fs_store))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
