"""tus 1.0.0 at /uploads/, raw: every status code the protocol text names, in-process."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from artifactd.errors import StorageFullError
from artifactd.evictor import Evictor
from artifactd.resumable.filesystem import FilesystemResources
from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.store.memory import MemoryStore
from artifactd.tokens import TokenStore
from artifactd.web.app import create_app
from tests.web.conftest import Client, ClientFactory, bearer, sha256_hex, store_bytes
from tests.web.test_expect_continue import expect_exchange

Tokens = dict[str, dict[str, str]]
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {"Content-Type": "application/offset+octet-stream"}
DATA = bytes(range(256)) * 64  # 16 KiB


def metadata(**pairs: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


def piece_checksum(data: bytes) -> str:
    return "sha256 " + base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.fixture
def tokens(storage_root: Path) -> Tokens:
    store = TokenStore(storage_root)
    return {
        "a": bearer(store.add("ci-a", "write")),
        "b": bearer(store.add("ci-b", "write")),
        "read": bearer(store.add("dash", "read")),
        "myproj": bearer(store.add("myproj-ci", "write", prefix="myproj/")),
    }


@pytest.fixture
async def tus_client(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path
) -> Client:
    settings = Settings(root=storage_root, max_upload_size=len(DATA) * 2)
    return await aiohttp_client(create_app(settings, fs_store))


async def create(
    client: Client, token: dict[str, str], length: int | None = len(DATA), **meta: str
) -> str:
    headers = {**TUS, **token, "Upload-Metadata": metadata(**({"path": "big/a.bin"} | meta))}
    if length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(length)
    response = await client.post("/uploads/", headers=headers)
    assert response.status == 201, await response.text()
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert "Upload-Expires" in response.headers
    location = response.headers["Location"]
    assert location.startswith("/uploads/") and len(location) >= len("/uploads/") + 22
    return location


async def patch(
    client: Client, location: str, token: dict[str, str], offset: int, data: bytes, **extra: str
) -> int:
    headers = {**TUS, **OCTETS, **token, "Upload-Offset": str(offset), **extra}
    response = await client.patch(location, headers=headers, data=data)
    return response.status


async def offset_of(client: Client, location: str, token: dict[str, str]) -> int:
    response = await client.head(location, headers={**TUS, **token})
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    return int(response.headers["Upload-Offset"])


async def test_options_advertises_version_extensions_and_limits(tus_client: Client) -> None:
    response = await tus_client.options("/uploads/")
    assert response.status == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert response.headers["Tus-Extension"] == (
        "creation,creation-with-upload,creation-defer-length,expiration,checksum,termination"
    )
    assert response.headers["Tus-Max-Size"] == str(len(DATA) * 2)
    assert response.headers["Tus-Checksum-Algorithm"] == "sha256"


async def test_upload_in_pieces_commits_a_verified_artifact(
    tus_client: Client, tokens: Tokens, fs_store: FilesystemStore
) -> None:
    location = await create(tus_client, tokens["a"], sha256=sha256_hex(DATA))
    head = await tus_client.head(location, headers={**TUS, **tokens["a"]})
    assert head.headers["Upload-Length"] == str(len(DATA))
    assert head.headers["Upload-Metadata"] == metadata(path="big/a.bin", sha256=sha256_hex(DATA))
    assert await offset_of(tus_client, location, tokens["a"]) == 0
    assert await patch(tus_client, location, tokens["a"], 0, DATA[:5000]) == 204
    assert await offset_of(tus_client, location, tokens["a"]) == 5000
    response = await tus_client.get("/files/big/a.bin")
    assert response.status == 404  # nothing visible before the last byte
    final = await tus_client.patch(
        location,
        headers={**TUS, **OCTETS, **tokens["a"], "Upload-Offset": "5000"},
        data=DATA[5000:],
    )
    assert final.status == 204
    assert final.headers["Upload-Offset"] == str(len(DATA))
    assert "ETag" in final.headers
    response = await tus_client.get("/files/big/a.bin")
    assert await response.read() == DATA
    # The resource is gone once committed.
    gone = await tus_client.head(location, headers={**TUS, **tokens["a"]})
    assert gone.status == 404


async def test_creation_with_upload_and_deferred_length(tus_client: Client, tokens: Tokens) -> None:
    headers = {
        **TUS,
        **OCTETS,
        **tokens["a"],
        "Upload-Defer-Length": "1",
        "Upload-Metadata": metadata(path="big/d.bin", content_type="text/plain"),
    }
    response = await tus_client.post("/uploads/", headers=headers, data=DATA[:100])
    assert response.status == 201
    assert response.headers["Upload-Offset"] == "100"
    location = response.headers["Location"]
    head = await tus_client.head(location, headers={**TUS, **tokens["a"]})
    assert head.headers["Upload-Defer-Length"] == "1"
    status = await patch(
        tus_client, location, tokens["a"], 100, DATA[100:200], **{"Upload-Length": "200"}
    )
    assert status == 204
    response = await tus_client.get("/files/big/d.bin")
    assert await response.read() == DATA[:200]
    assert response.headers["Content-Type"].startswith("text/plain")


async def test_wrong_offset_is_409(tus_client: Client, tokens: Tokens) -> None:
    location = await create(tus_client, tokens["a"])
    assert await patch(tus_client, location, tokens["a"], 7, DATA[:10]) == 409
    assert await offset_of(tus_client, location, tokens["a"]) == 0


async def test_checksum_mismatch_is_460_and_keeps_the_offset(
    tus_client: Client, tokens: Tokens
) -> None:
    location = await create(tus_client, tokens["a"])
    good = piece_checksum(DATA[:10])
    assert (
        await patch(tus_client, location, tokens["a"], 0, DATA[:10], **{"Upload-Checksum": good})
        == 204
    )
    bad = piece_checksum(b"something else")
    status = await patch(
        tus_client, location, tokens["a"], 10, DATA[10:20], **{"Upload-Checksum": bad}
    )
    assert status == 460
    assert await offset_of(tus_client, location, tokens["a"]) == 10
    other = {"Upload-Checksum": "md5 " + base64.b64encode(b"x" * 16).decode()}
    assert await patch(tus_client, location, tokens["a"], 10, DATA[10:20], **other) == 400


async def test_without_tus_resumable_is_412(tus_client: Client, tokens: Tokens) -> None:
    response = await tus_client.post(
        "/uploads/",
        headers={**tokens["a"], "Upload-Length": "1", "Upload-Metadata": metadata(path="x")},
    )
    assert response.status == 412
    assert response.headers["Tus-Version"] == "1.0.0"
    location = await create(tus_client, tokens["a"])
    response = await tus_client.head(location, headers=tokens["a"])
    assert response.status == 412


async def test_wrong_content_type_is_415(tus_client: Client, tokens: Tokens) -> None:
    location = await create(tus_client, tokens["a"])
    response = await tus_client.patch(
        location,
        headers={**TUS, **tokens["a"], "Upload-Offset": "0", "Content-Type": "text/plain"},
        data=b"x",
    )
    assert response.status == 415


@pytest.mark.parametrize(
    "headers",
    [
        {"Upload-Metadata": metadata(path="x")},  # neither length nor deferral
        {"Upload-Length": "10"},  # no path
        {"Upload-Length": "-1", "Upload-Metadata": metadata(path="x")},
        {"Upload-Length": "10", "Upload-Metadata": "path !!!"},
        {"Upload-Length": "10", "Upload-Metadata": metadata(path="x", sha256="zz")},
        {"Upload-Length": "10", "Upload-Metadata": metadata(path="x", ttl="soon")},
        {"Upload-Length": "10", "Upload-Metadata": metadata(path=".artifactd/x")},
    ],
)
async def test_bad_creation_is_400(
    tus_client: Client, tokens: Tokens, headers: dict[str, str]
) -> None:
    response = await tus_client.post("/uploads/", headers={**TUS, **tokens["a"], **headers})
    assert response.status == 400
    assert json.loads(await response.text())["status"] == 400


async def test_over_the_size_limits_is_413(tus_client: Client, tokens: Tokens) -> None:
    headers = {**TUS, **tokens["a"], "Upload-Metadata": metadata(path="x")}
    response = await tus_client.post(
        "/uploads/", headers={**headers, "Upload-Length": str(len(DATA) * 2 + 1)}
    )
    assert response.status == 413
    location = await create(tus_client, tokens["a"], length=10)
    assert await patch(tus_client, location, tokens["a"], 0, DATA[:11]) == 413
    assert await offset_of(tus_client, location, tokens["a"]) == 0


async def test_termination_is_204_then_404(tus_client: Client, tokens: Tokens) -> None:
    location = await create(tus_client, tokens["a"])
    response = await tus_client.delete(location, headers={**TUS, **tokens["a"]})
    assert response.status == 204
    response = await tus_client.head(location, headers={**TUS, **tokens["a"]})
    assert response.status == 404


async def test_another_token_sees_404(tus_client: Client, tokens: Tokens) -> None:
    location = await create(tus_client, tokens["a"])
    assert (await tus_client.head(location, headers={**TUS, **tokens["b"]})).status == 404
    assert await patch(tus_client, location, tokens["b"], 0, DATA[:10]) == 404
    assert (await tus_client.delete(location, headers={**TUS, **tokens["b"]})).status == 404
    assert await offset_of(tus_client, location, tokens["a"]) == 0


async def test_authorisation(tus_client: Client, tokens: Tokens) -> None:
    headers = {**TUS, "Upload-Length": "1", "Upload-Metadata": metadata(path="other/x")}
    assert (await tus_client.post("/uploads/", headers=headers)).status == 401
    read = await tus_client.post("/uploads/", headers={**headers, **tokens["read"]})
    assert read.status == 403
    outside = await tus_client.post("/uploads/", headers={**headers, **tokens["myproj"]})
    assert outside.status == 403
    location = await create(tus_client, tokens["a"])
    assert (await tus_client.head(location, headers=TUS)).status == 401


async def test_unknown_id_is_404(tus_client: Client, tokens: Tokens) -> None:
    response = await tus_client.head("/uploads/" + "A" * 32, headers={**TUS, **tokens["a"]})
    assert response.status == 404
    response = await tus_client.head("/uploads/..%2f..", headers={**TUS, **tokens["a"]})
    assert response.status == 404


async def test_completion_goes_through_the_verified_commit(
    tus_client: Client, tokens: Tokens, fs_store: FilesystemStore
) -> None:
    location = await create(tus_client, tokens["a"], length=10, sha256="0" * 64)
    assert await patch(tus_client, location, tokens["a"], 0, DATA[:10]) == 400  # digest mismatch
    assert (await tus_client.get("/files/big/a.bin")).status == 404


async def test_immutable_refuses_the_commit(
    aiohttp_client: ClientFactory,
    fs_store: FilesystemStore,
    storage_root: Path,
    tokens: Tokens,
) -> None:
    await store_bytes(fs_store, "big/a.bin", b"old")
    client = await aiohttp_client(create_app(Settings(root=storage_root, immutable=True), fs_store))
    location = await create(client, tokens["a"], length=10)
    assert await patch(client, location, tokens["a"], 0, DATA[:10]) == 409
    assert await (await client.get("/files/big/a.bin")).read() == b"old"


async def test_expired_resources_are_gone_and_collected(
    tus_client: Client, tokens: Tokens, fs_store: FilesystemStore
) -> None:
    location = await create(tus_client, tokens["a"])
    resources = FilesystemResources(fs_store.state_dir)
    upload_id = location.rsplit("/", 1)[-1]
    state = await resources.load(upload_id)
    state.expires_at = time.time() - 1
    await asyncio.to_thread(resources.save, state)
    assert (await tus_client.head(location, headers={**TUS, **tokens["a"]})).status == 404


async def test_the_stale_upload_cleanup_removes_expired_resources(
    fs_store: FilesystemStore,
) -> None:
    resources = FilesystemResources(fs_store.state_dir)
    old = await resources.create("x", owner=None, length=1, expires_at=time.time() - 1)
    live = await resources.create("y", owner=None, length=1, expires_at=time.time() + 60)
    assert (await Evictor(fs_store).run_once()).stale_uploads == 1
    assert not await asyncio.to_thread(resources.data_path(old.id).exists)
    assert await asyncio.to_thread(resources.data_path(live.id).exists)


async def test_the_memory_backend_keeps_upload_resources_too(
    aiohttp_client: ClientFactory, storage_root: Path, tokens: Tokens
) -> None:
    client = await aiohttp_client(create_app(Settings(root=storage_root), MemoryStore()))
    location = await create(client, tokens["a"])
    assert await patch(client, location, tokens["a"], 0, DATA[:100]) == 204
    assert await offset_of(client, location, tokens["a"]) == 100
    assert await patch(client, location, tokens["a"], 100, DATA[100:]) == 204
    assert await (await client.get("/files/big/a.bin")).read() == DATA


async def test_an_empty_upload_is_complete_once_created(tus_client: Client, tokens: Tokens) -> None:
    location = await create(tus_client, tokens["a"], length=0, path="big/empty")
    assert (await tus_client.head(location, headers={**TUS, **tokens["a"]})).status == 404
    response = await tus_client.get("/files/big/empty")
    assert response.status == 200
    assert await response.read() == b""


async def test_expect_continue_is_refused_before_the_body(
    tus_client: Client, tokens: Tokens
) -> None:
    location = await create(tus_client, tokens["a"])
    tus = "Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
    no_token = await expect_exchange(tus_client, "PATCH", location, tus + "Upload-Offset: 0\r\n")
    assert no_token == b"401"  # instead of 100 Continue: the body is never sent
    token = f"Authorization: {tokens['a']['Authorization']}\r\n"
    created = await expect_exchange(
        tus_client, "POST", "/uploads/", tus + token + "Upload-Defer-Length: 1\r\n"
    )
    assert created == b"100+400"  # admitted, then the missing `path` metadata


async def test_bytes_past_the_saved_offset_are_dropped_after_a_crash(
    tus_client: Client, tokens: Tokens, fs_store: FilesystemStore
) -> None:
    """kill -9 mid-PATCH: the bytes were written, their state was not."""
    location = await create(tus_client, tokens["a"])
    assert await patch(tus_client, location, tokens["a"], 0, DATA[:100]) == 204
    resources = FilesystemResources(fs_store.state_dir)
    data_path = resources.data_path(location.rsplit("/", 1)[-1])
    with await asyncio.to_thread(data_path.open, "ab") as file:
        await asyncio.to_thread(file.write, b"never acknowledged")
    assert await offset_of(tus_client, location, tokens["a"]) == 100
    assert await patch(tus_client, location, tokens["a"], 100, DATA[100:]) == 204
    assert await (await tus_client.get("/files/big/a.bin")).read() == DATA


async def test_one_request_appends_at_a_time(
    tus_client: Client, tokens: Tokens, fs_store: FilesystemStore
) -> None:
    location = await create(tus_client, tokens["a"])
    resources = FilesystemResources(fs_store.state_dir)
    # Held as another worker process appending would hold it (an flock of its own).
    async with resources.appending(location.rsplit("/", 1)[-1]):
        assert await patch(tus_client, location, tokens["a"], 0, DATA[:10]) == 409
    assert await patch(tus_client, location, tokens["a"], 0, DATA[:10]) == 204


async def test_a_full_disk_at_completion_keeps_the_upload_for_a_retry(
    tus_client: Client, tokens: Tokens, fs_store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = await create(tus_client, tokens["a"], length=10)
    begin_upload = fs_store.begin_upload

    async def full(*args: Any, **kwargs: Any) -> Any:
        raise StorageFullError("no space left on device")

    monkeypatch.setattr(fs_store, "begin_upload", full)
    assert await patch(tus_client, location, tokens["a"], 0, DATA[:10]) == 507
    assert await offset_of(tus_client, location, tokens["a"]) == 10
    monkeypatch.setattr(fs_store, "begin_upload", begin_upload)
    assert await patch(tus_client, location, tokens["a"], 10, b"") == 204
    assert await (await tus_client.get("/files/big/a.bin")).read() == DATA[:10]


async def test_a_head_during_a_patch_leaves_its_bytes_alone(
    tus_client: Client, tokens: Tokens, fs_store: FilesystemStore
) -> None:
    """A client that lost patience asks HEAD while its PATCH is still being received: the
    answer is the last saved offset, and the PATCH's bytes received so far stay."""
    location = await create(tus_client, tokens["a"])
    data_path = FilesystemResources(fs_store.state_dir).data_path(location.rsplit("/", 1)[-1])
    rest = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield DATA[:100]
        await rest.wait()
        yield DATA[100:]

    headers = {**TUS, **OCTETS, **tokens["a"], "Upload-Offset": "0"}
    headers["Content-Length"] = str(len(DATA))
    sending = asyncio.ensure_future(tus_client.patch(location, headers=headers, data=body()))
    for _ in range(500):
        if await asyncio.to_thread(lambda: data_path.stat().st_size) >= 100:
            break
        await asyncio.sleep(0.01)
    assert await offset_of(tus_client, location, tokens["a"]) == 0
    rest.set()
    assert (await sending).status == 204
    assert await (await tus_client.get("/files/big/a.bin")).read() == DATA
