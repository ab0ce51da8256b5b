"""Nx's self-hosted remote cache API at /nx, in-process: every endpoint and status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yarl

from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.tokens import TokenStore
from artifactd.web.app import create_app
from tests.web.conftest import Auth, Client, ClientFactory, sha256_hex
from tests.web.test_turbo import metric

HASH = "16158404218290411316"
URL = f"/nx/v1/cache/{HASH}"
BODY = bytes(range(256)) * 12


@pytest.fixture
def tokens(storage_root: Path) -> dict[str, str]:
    store = TokenStore(storage_root)
    return {
        "read": store.add("pr-ci", "read"),
        "write": store.add("main-ci", "write", prefix="nx/"),
        "other": store.add("other-ci", "write", prefix="turbo/"),
    }


@pytest.fixture
async def nx(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path
) -> Client:
    return await aiohttp_client(create_app(Settings(root=storage_root), fs_store))


async def test_put_202_then_get_200(nx: Client) -> None:
    put = await nx.put(URL, data=BODY, headers={"Content-Type": "application/octet-stream"})
    assert put.status == 202
    get = await nx.get(URL)
    assert get.status == 200
    assert get.headers["Content-Type"] == "application/octet-stream"
    assert await get.read() == BODY


async def test_entries_are_write_once_409(nx: Client) -> None:
    assert (await nx.put(URL, data=BODY)).status == 202
    for body in (b"other bytes", BODY):
        again = await nx.put(URL, data=body)
        assert again.status == 409
        assert again.headers["Content-Type"].startswith("text/plain")
    assert await (await nx.get(URL)).read() == BODY


async def test_a_miss_is_404(nx: Client) -> None:
    response = await nx.get(URL)
    assert response.status == 404
    assert response.headers["Content-Type"].startswith("text/plain")


async def test_an_entry_is_an_ordinary_artifact(nx: Client) -> None:
    await nx.put(URL, data=BODY)
    assert await (await nx.get(f"/files/nx/{HASH}")).read() == BODY
    document = await (await nx.get(f"/api/v1/artifacts/nx/{HASH}")).json()
    assert document["sha256"] == sha256_hex(BODY)


async def test_content_length_is_required(nx: Client) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield BODY

    response = await nx.put(URL, data=chunks())
    assert response.status == 400
    assert "Content-Length" in await response.text()
    assert (await nx.get(URL)).status == 404


@pytest.mark.parametrize("tail", ["a-b", "a.b", "%2e%2e", "x" * 129, "a%2Fb"])
async def test_unsafe_hash_is_400(nx: Client, tail: str) -> None:
    for method in ("GET", "PUT"):
        data = b"x" if method == "PUT" else None
        url = yarl.URL(f"/nx/v1/cache/{tail}", encoded=True)
        response = await nx.request(method, url, data=data)
        assert response.status == 400
        assert response.headers["Content-Type"].startswith("text/plain")
    listed = await (await nx.get("/api/v1/artifacts")).json()
    assert listed["artifacts"] == []


async def test_metrics(nx: Client) -> None:
    await nx.get(URL)
    await nx.put(URL, data=BODY)
    await nx.put(URL, data=BODY)  # 409: no write
    await nx.get(URL)
    assert await metric(nx, "miss", "nx") == 1
    assert await metric(nx, "write", "nx") == 1
    assert await metric(nx, "hit", "nx") == 1
    assert await metric(nx, "hit", "turbo") == 0


async def test_tokens(nx: Client, tokens: dict[str, str], auth: Auth) -> None:
    missing = await nx.put(URL, data=BODY)
    assert missing.status == 401
    assert missing.headers["Content-Type"].startswith("text/plain")
    read_only = await nx.put(URL, data=BODY, headers=auth(tokens["read"]))
    assert read_only.status == 403
    assert "write" in await read_only.text()
    assert (await nx.put(URL, data=BODY, headers=auth(tokens["other"]))).status == 403
    assert (await nx.put(URL, data=BODY, headers=auth(tokens["write"]))).status == 202
    assert (await nx.get(URL, headers=auth(tokens["read"]))).status == 200


async def test_expect_continue_refusal_is_plain_text(
    nx: Client, tokens: dict[str, str], auth: Auth
) -> None:
    headers = {**auth(tokens["read"]), "Expect": "100-continue"}
    response = await nx.put(URL, data=BODY, headers=headers)
    assert response.status == 403
    assert response.headers["Content-Type"].startswith("text/plain")


async def first_answer_to_expect(client: Client, url: str) -> bytes:
    """The status line answering a PUT's headers with `Expect: 100-continue` (no body sent)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(
            f"PUT {url} HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


async def test_expect_continue_on_an_existing_hash_is_409_before_the_body(nx: Client) -> None:
    assert (await nx.put(URL, data=BODY)).status == 202
    assert (await first_answer_to_expect(nx, URL)).startswith(b"HTTP/1.1 409 ")
    assert (await first_answer_to_expect(nx, "/nx/v1/cache/42")).startswith(b"HTTP/1.1 100 ")
    response = await nx.put(URL, data=b"other", expect100=True)
    assert response.status == 409
    assert response.headers["Content-Type"].startswith("text/plain")
    assert (await nx.put("/nx/v1/cache/42", data=BODY, expect100=True)).status == 202
