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
from tests.web.conftest import Client, ClientFactory, store_bytes

BODY = b"body"


async def expect_exchange(client: Client, method: str, target: str, headers: str = "") -> bytes:
    """The status answering the head (say `401`); after `100 Continue` the body goes out
    and the answer is `100+` and the final status (say `100+201`)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(BODY)}\r\n"
            f"Expect: 100-continue\r\nConnection: close\r\n{headers}\r\n".encode()
        )
        status = await asyncio.wait_for(reader.readline(), 10)
        if b" 100 " not in status:
            # The server discards a refused body until the client's end (aiohttp's lingering
            # close): say there is none, and wait for its close, so no handler outlives this.
            writer.write_eof()
            await asyncio.wait_for(reader.read(), 10)
            return status.split(b" ")[1]
        assert await asyncio.wait_for(reader.readline(), 10) == b"\r\n"
        writer.write(BODY)
        return b"100+" + (await asyncio.wait_for(reader.readline(), 10)).split(b" ")[1]
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
    form = "Content-Type: multipart/form-data; boundary=b\r\n"
    answers = [await expect_exchange(limited, method, target, form) for _ in range(3)]
    assert answers[2] == b"429"
    assert all(answer.startswith(b"100+") for answer in answers[:2]), answers
    assert b"100+429" not in answers


@pytest.mark.parametrize(
    ("immutable", "method", "target", "headers", "status"),
    [
        pytest.param(False, "PUT", "/files/data.bin", "If-None-Match: *\r\n", b"412", id="412"),
        pytest.param(
            False, "PUT", "/files/data.bin", 'If-Match: "nope"\r\n', b"412", id="if-match"
        ),
        pytest.param(True, "PUT", "/files/data.bin", "", b"409", id="immutable"),
        pytest.param(False, "PUT", "/files/x", "X-Artifact-TTL: soon\r\n", b"400", id="bad-ttl"),
        pytest.param(
            False, "PUT", "/files/x", "X-Checksum-Sha256: zz\r\n", b"400", id="bad-digest"
        ),
        pytest.param(False, "PUT", "/files/a/%2e%2e/x", "", b"400", id="bad-path"),
        pytest.param(False, "PUT", "/files/dir", "", b"409", id="onto-a-directory"),
        pytest.param(False, "PUT", "/files/data.bin/x", "", b"409", id="below-a-file"),
        pytest.param(False, "POST", "/files/up/", "", b"400", id="form-without-type"),
        pytest.param(
            False,
            "POST",
            "/files/up/",
            "Content-Type: multipart/form-data\r\n",
            b"400",
            id="form-without-boundary",
        ),
    ],
)
async def test_what_the_handler_would_refuse_is_refused_before_the_body(
    aiohttp_client: ClientFactory,
    fs_store: FilesystemStore,
    storage_root: Path,
    immutable: bool,
    method: str,
    target: str,
    headers: str,
    status: bytes,
) -> None:
    """SPEC "Build caches": the final refusal is sent instead of `100 Continue`."""
    await store_bytes(fs_store, "data.bin", b"stored")
    await store_bytes(fs_store, "dir/inside.bin", b"inside")
    client = await aiohttp_client(
        create_app(Settings(root=storage_root, immutable=immutable), fs_store)
    )
    assert await expect_exchange(client, method, target, headers) == status
    assert await (await client.get("/files/data.bin")).read() == b"stored"


async def requests_counted(client: Client, method: str, route: str, status: int) -> float:
    text = await (await client.get("/metrics")).text()
    line = f'artifactd_http_requests_total{{method="{method}",route="{route}",status="{status}"}} '
    found = [row[len(line) :] for row in text.splitlines() if row.startswith(line)]
    return float(found[0]) if found else 0.0


async def test_refusals_before_the_body_are_counted_in_the_metrics(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path
) -> None:
    """They are answered before any middleware runs, the metrics one included."""
    client = await aiohttp_client(
        create_app(Settings(root=storage_root, max_upload_size=2), fs_store)
    )
    await store_bytes(fs_store, "nx/1234", b"x")
    for method, target, route, status in [
        ("PUT", "/files/a", "/files/{tail}", 413),
        ("PUT", "/turbo/v8/artifacts/abcd", "/turbo/v8/artifacts/{hash}", 413),
        ("PUT", "/nx/v1/cache/1234", "/nx/v1/cache/{hash}", 409),
    ]:
        assert await expect_exchange(client, method, target) == str(status).encode()
        assert await requests_counted(client, method, route, status) == 1.0, target
