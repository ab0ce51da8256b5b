"""`Expect: 100-continue` asks the same access policy as every other request, once: the rate
limit and authorisation answer (429, 401, 403) instead of `100 Continue`, before the body,
and a request admitted there is not counted again when its body arrives."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.tokens import TokenStore
from artifactd.web.app import create_app
from tests.web.conftest import Client, ClientFactory

BODY = b"body"


async def expect_exchange(client: Client, method: str, target: str, headers: str = "") -> bytes:
    """The status line answering the head; the body goes out only after `100 Continue`."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(BODY)}\r\n"
            f"Expect: 100-continue\r\nConnection: close\r\n{headers}\r\n".encode()
        )
        status = await asyncio.wait_for(reader.readline(), 10)
        if b" 100 " not in status:
            return status.split(b" ")[1]
        assert await asyncio.wait_for(reader.readline(), 10) == b"\r\n"
        writer.write(BODY)
        return (await asyncio.wait_for(reader.readline(), 10)).split(b" ")[1]
    finally:
        writer.close()


@pytest.fixture
async def limited(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path
) -> Client:
    settings = Settings(root=storage_root, rate_limit="2/min")
    return await aiohttp_client(create_app(settings, fs_store))


@pytest.fixture
def write_token(storage_root: Path) -> str:
    """A token exists, made before the event loop runs (as the CLI would)."""
    return TokenStore(storage_root).add("ci", "write")


async def test_guesses_with_expect_are_rate_limited(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path, write_token: str
) -> None:
    client = await aiohttp_client(
        create_app(Settings(root=storage_root, rate_limit="3/min"), fs_store)
    )
    guesses = [
        await expect_exchange(client, "PUT", "/files/x", f"Authorization: Bearer adt_guess{i}\r\n")
        for i in range(6)
    ]
    assert guesses == [b"401"] * 3 + [b"429"] * 3


async def test_a_token_without_write_scope_is_refused_before_the_body(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path
) -> None:
    reader = await asyncio.to_thread(TokenStore(storage_root).add, "dash", "read")
    client = await aiohttp_client(create_app(Settings(root=storage_root), fs_store))
    assert await expect_exchange(client, "POST", "/files/up/") == b"401"
    auth = f"Authorization: Bearer {reader}\r\n"
    assert await expect_exchange(client, "POST", "/files/up/", auth) == b"403"


@pytest.mark.parametrize(("method", "target"), [("PUT", "/files/x"), ("POST", "/files/up/")])
async def test_an_admitted_request_is_counted_once(
    limited: Client, method: str, target: str
) -> None:
    # 2/min: two requests pass, each through the Expect handler and then the middleware.
    answers = [await expect_exchange(limited, method, target) for _ in range(3)]
    assert answers[2] == b"429"
    assert all(answer != b"429" for answer in answers[:2]), answers
