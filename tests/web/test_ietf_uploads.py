"""The IETF "Resumable Uploads for HTTP" draft, raw and in-process, in both interop versions
the server speaks (6: draft -04/-05, 8: drafts -09 to -11): every status code and header."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from artifactd.errors import StorageFullError
from artifactd.resumable.filesystem import FilesystemResources
from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.store.memory import MemoryStore
from artifactd.tokens import TokenStore
from artifactd.web.app import create_app
from artifactd.web.keys import EVENTS
from tests.web.conftest import Client, ClientFactory, bearer, sha256_hex, store_bytes

Tokens = dict[str, dict[str, str]]
DATA = bytes(range(256)) * 64  # 16 KiB
PARTIAL = {"Content-Type": "application/partial-upload"}
PROBLEM_TYPES = "https://iana.org/assignments/http-problem-types#"
LIMIT = len(DATA) * 4


@pytest.fixture(params=[6, 8], ids=["interop6", "interop8"])
def version(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def tokens(storage_root: Path) -> Tokens:
    store = TokenStore(storage_root)
    return {
        "a": bearer(store.add("ci-a", "write")),
        "b": bearer(store.add("ci-b", "write")),
        "read": bearer(store.add("dash", "read")),
        "myproj": bearer(store.add("myproj-ci", "write", prefix="myproj")),
    }


@pytest.fixture
def settings(storage_root: Path) -> Settings:
    return Settings(root=storage_root, max_upload_size=LIMIT)


@pytest.fixture
async def up(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, settings: Settings
) -> Client:
    # As `artifactd serve` runs it: a handler whose client left is not cancelled, so it
    # keeps what it received (aiohttp's test server would cancel it).
    client = await aiohttp_client(create_app(settings, fs_store))
    runner = client.server.runner
    assert runner is not None and runner.server is not None
    runner.server.handler_cancellation = False
    return client


def draft(version: int, token: dict[str, str], **fields: str) -> dict[str, str]:
    headers = {"Upload-Draft-Interop-Version": str(version), **token}
    headers.update({name.replace("_", "-"): value for name, value in fields.items()})
    return headers


async def create_incomplete(
    client: Client, version: int, token: dict[str, str], data: bytes = b"", **fields: str
) -> str:
    response = await client.put(
        "/files/big/a.bin", headers=draft(version, token, Upload_Complete="?0", **fields), data=data
    )
    assert response.status == 201, await response.text()
    assert response.headers["Upload-Complete"] == "?0"
    assert response.headers["Upload-Offset"] == str(len(data))
    location = response.headers["Location"]
    assert location.startswith("/uploads/") and len(location) == len("/uploads/") + 32
    return location


async def append(
    client: Client,
    location: str,
    version: int,
    token: dict[str, str],
    offset: int,
    data: bytes,
    complete: bool,
    **extra: str,
) -> tuple[int, Mapping[str, str], bytes]:
    headers = draft(
        version, token, Upload_Offset=str(offset), Upload_Complete="?1" if complete else "?0"
    )
    response = await client.patch(location, headers={**headers, **PARTIAL, **extra}, data=data)
    return response.status, response.headers, await response.read()


async def offset_of(client: Client, location: str, version: int, token: dict[str, str]) -> int:
    response = await client.head(location, headers=draft(version, token))
    assert response.status == 204, response.status
    return int(response.headers["Upload-Offset"])


# -- the raw exchange: the 104 is read before any of the body is sent ---------------------


class Raw:
    """One HTTP/1.1 connection written and read by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, client: Client) -> Raw:
        assert client.port is not None
        reader, writer = await asyncio.open_connection(str(client.host), client.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(self, method: str, target: str, headers: dict[str, str]) -> None:
        lines = [f"{method} {target} HTTP/1.1", "Host: test"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    async def head(self) -> tuple[str, dict[str, str]]:
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        status, *lines = raw.decode("latin-1").rstrip("\r\n").split("\r\n")
        return status, {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}

    async def body(self, headers: dict[str, str]) -> bytes:
        return await self.reader.readexactly(int(headers.get("content-length", "0")))

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def raw(up: Client) -> AsyncIterator[Raw]:
    connection = await Raw.open(up)
    yield connection
    await connection.close()


async def settled_offset(
    client: Client, location: str, version: int, token: dict[str, str], want: int
) -> int:
    """The offset once the server noticed the dropped connection and saved what it got."""
    offset = -1
    for _ in range(100):
        offset = await offset_of(client, location, version, token)
        if offset == want:
            break
        await asyncio.sleep(0.05)
    return offset


async def test_104_before_the_body_then_drop_then_resume(
    up: Client, raw: Raw, version: int, tokens: Tokens, fs_store: FilesystemStore
) -> None:
    headers = draft(version, tokens["a"], Upload_Complete="?1")
    await raw.request("PUT", "/files/big/a.bin", {**headers, "Content-Length": str(len(DATA))})
    status, interim = await raw.head()  # nothing of the body sent yet
    assert status == "HTTP/1.1 104 Upload Resumption Supported"
    location = interim["location"]
    assert location.startswith("/uploads/")
    assert interim["upload-draft-interop-version"] == str(version)
    lifetime = "expires" if version == 6 else "max-age"
    assert interim["upload-limit"].startswith(f"max-size={LIMIT}, {lifetime}=")
    half = len(DATA) // 2
    await raw.send(DATA[:half])
    # Bytes the server has not read yet when the connection drops are lost with it
    # (aiohttp's payload raises at once): let it read them, as over a real link.
    await asyncio.sleep(0.3)
    await raw.close()  # the connection drops half-way

    assert await settled_offset(up, location, version, tokens["a"], half) == half
    response = await up.get("/files/big/a.bin")
    assert response.status == 404  # invisible until complete

    status_code, answer, body = await append(
        up, location, version, tokens["a"], half, DATA[half:], complete=True
    )
    assert status_code == 201, body
    assert answer["Upload-Complete"] == "?1"
    assert answer["Location"] == "/files/big/a.bin"
    assert json.loads(body)["sha256"] == sha256_hex(DATA)
    response = await up.get("/files/big/a.bin")
    assert await response.read() == DATA
    assert answer["ETag"] == response.headers["ETag"]


async def test_expect_100_continue_comes_before_the_104(
    up: Client, raw: Raw, version: int, tokens: Tokens
) -> None:
    headers = draft(version, tokens["a"], Upload_Complete="?1", Expect="100-continue")
    await raw.request("PUT", "/files/big/a.bin", {**headers, "Content-Length": str(len(DATA))})
    assert (await raw.head())[0] == "HTTP/1.1 100 Continue"
    assert (await raw.head())[0] == "HTTP/1.1 104 Upload Resumption Supported"
    await raw.send(DATA)
    status, final = await raw.head()
    assert status.startswith("HTTP/1.1 201")
    assert json.loads(await raw.body(final))["size"] == len(DATA)


@pytest.mark.parametrize("interop", ["5", "7", "x", None])
async def test_an_unknown_interop_version_is_a_plain_put(
    up: Client, raw: Raw, interop: str | None, tokens: Tokens, fs_store: FilesystemStore
) -> None:
    headers = {"Upload-Complete": "?1", "Content-Length": str(len(DATA)), **tokens["a"]}
    if interop is not None:
        headers["Upload-Draft-Interop-Version"] = interop
    await raw.request("PUT", "/files/big/a.bin", headers)
    await raw.send(DATA)
    status, final = await raw.head()  # no 104 first
    assert status.startswith("HTTP/1.1 201"), status
    assert "upload-complete" not in final
    assert json.loads(await raw.body(final))["size"] == len(DATA)
    uploads_dir = FilesystemResources(fs_store.state_dir).dir
    assert not uploads_dir.exists() or not any(uploads_dir.iterdir())


async def test_http10_gets_no_interim_response(up: Client, tokens: Tokens) -> None:
    raw = await Raw.open(up)
    try:
        head = "PUT /files/big/a.bin HTTP/1.0\r\nUpload-Draft-Interop-Version: 8\r\n"
        auth = "".join(f"{k}: {v}\r\n" for k, v in tokens["a"].items())
        await raw.send(
            f"{head}{auth}Upload-Complete: ?1\r\nContent-Length: {len(DATA)}\r\n\r\n".encode()
            + DATA
        )
        status, _ = await raw.head()
        assert status.startswith("HTTP/1.1 201") or status.startswith("HTTP/1.0 201"), status
    finally:
        await raw.close()


async def test_a_tus_request_keeps_going_to_tus(up: Client, tokens: Tokens) -> None:
    headers = draft(8, tokens["a"], Upload_Complete="?1", Tus_Resumable="1.0.0")
    response = await up.post("/uploads/", headers=headers)
    assert response.status == 400  # tus: Upload-Length or Upload-Defer-Length is required
    assert "length" in (await response.json())["error"].lower()
    assert "Upload-Complete" not in response.headers


# -- creation ---------------------------------------------------------------------------


async def test_complete_in_one_request_answers_what_the_put_would(
    up: Client, version: int, tokens: Tokens
) -> None:
    headers = draft(version, tokens["a"], Upload_Complete="?1")
    resumable = await up.put("/files/big/a.bin", headers=headers, data=DATA)
    assert resumable.status == 201
    assert resumable.headers["Upload-Complete"] == "?1"
    plain = await up.put("/files/big/b.bin", headers=tokens["a"], data=DATA)
    first, second = await resumable.json(), await plain.json()
    assert set(first) == set(second)
    assert first["sha256"] == second["sha256"] == sha256_hex(DATA)
    assert resumable.headers["Location"] == "/files/big/a.bin"
    assert resumable.headers["ETag"] == (await up.head("/files/big/a.bin")).headers["ETag"]
    again = await up.put("/files/big/a.bin", headers=headers, data=DATA[:100])
    assert again.status == 200  # replaced, as the PUT would say


async def test_post_uploads_with_a_path(up: Client, version: int, tokens: Tokens) -> None:
    headers = draft(version, tokens["a"], Upload_Complete="?1")
    response = await up.post("/uploads/?path=big/c.bin", headers=headers, data=DATA)
    assert response.status == 201, await response.text()
    assert (await response.json())["path"] == "big/c.bin"
    assert await (await up.get("/files/big/c.bin")).read() == DATA
    for bad in ("", "?path=", "?path=.artifactd/x"):
        response = await up.post(f"/uploads/{bad}", headers=headers, data=b"x")
        assert response.status == 400, bad


async def test_in_pieces_then_an_empty_completing_patch(
    up: Client, version: int, tokens: Tokens
) -> None:
    location = await create_incomplete(up, version, tokens["a"], DATA[:1000])
    status, headers, _ = await append(
        up, location, version, tokens["a"], 1000, DATA[1000:5000], complete=False
    )
    assert status == 204
    assert headers["Upload-Complete"] == "?0"
    assert headers["Upload-Offset"] == "5000"
    assert headers["Upload-Draft-Interop-Version"] == str(version)
    assert "Upload-Limit" in headers
    assert (await up.get("/files/big/a.bin")).status == 404
    status, _, _ = await append(up, location, version, tokens["a"], 5000, DATA[5000:], False)
    assert status == 204
    status, headers, body = await append(
        up, location, version, tokens["a"], len(DATA), b"", complete=True
    )
    assert status == 201, body
    assert headers["Upload-Complete"] == "?1"
    assert await (await up.get("/files/big/a.bin")).read() == DATA


async def test_head_gives_the_state_and_no_store(up: Client, version: int, tokens: Tokens) -> None:
    location = await create_incomplete(up, version, tokens["a"], DATA[:10], Upload_Length="100")
    response = await up.head(location, headers=draft(version, tokens["a"]))
    assert response.status == 204
    assert response.headers["Upload-Offset"] == "10"
    assert response.headers["Upload-Complete"] == "?0"
    assert response.headers["Upload-Length"] == "100"
    assert response.headers["Cache-Control"] == "no-store"
    lifetime = "expires" if version == 6 else "max-age"
    assert response.headers["Upload-Limit"].startswith(f"max-size={LIMIT}, {lifetime}=")


async def test_interop6_refuses_state_fields_on_head_and_delete(up: Client, tokens: Tokens) -> None:
    """-05 §5 and §7: HEAD must not carry Upload-Offset / -Complete / -Length, DELETE not
    Upload-Offset / -Complete (400); version 8 has no such rule."""
    for version, expected in ((6, 400), (8, 204)):
        location = await create_incomplete(up, version, tokens["a"])
        headers = draft(version, tokens["a"], Upload_Offset="0")
        assert (await up.head(location, headers=headers)).status == expected
        assert (await up.delete(location, headers=headers)).status == expected


async def test_completed_upload_head_and_patch(up: Client, version: int, tokens: Tokens) -> None:
    location = await create_incomplete(up, version, tokens["a"], DATA)
    status, _, _ = await append(up, location, version, tokens["a"], len(DATA), b"", True)
    assert status == 201
    response = await up.head(location, headers=draft(version, tokens["a"]))
    assert response.status == 204
    assert response.headers["Upload-Complete"] == "?1"
    assert response.headers["Upload-Offset"] == str(len(DATA))
    status, headers, body = await append(up, location, version, tokens["a"], len(DATA), b"", True)
    assert status == 400
    assert headers["Content-Type"] == "application/problem+json"
    assert json.loads(body)["type"] == PROBLEM_TYPES + "completed-upload"
    status, _, body = await append(up, location, version, tokens["a"], len(DATA), b"x", True)
    assert status == 400
    expected = "completed-upload" if version == 6 else "inconsistent-upload-length"
    assert json.loads(body)["type"] == PROBLEM_TYPES + expected
    assert await (await up.get("/files/big/a.bin")).read() == DATA  # not modified


async def test_mismatched_offset_is_409_problem(up: Client, version: int, tokens: Tokens) -> None:
    location = await create_incomplete(up, version, tokens["a"], DATA[:100])
    status, headers, body = await append(up, location, version, tokens["a"], 50, b"x", False)
    assert status == 409
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["Upload-Offset"] == "100"
    assert json.loads(body) == {
        "type": PROBLEM_TYPES + "mismatching-upload-offset",
        "title": "offset from request does not match offset of resource",
        "status": 409,
        "expected-offset": 100,
        "provided-offset": 50,
    }
    assert await offset_of(up, location, version, tokens["a"]) == 100


async def test_patch_needs_partial_upload_and_its_fields(
    up: Client, version: int, tokens: Tokens
) -> None:
    location = await create_incomplete(up, version, tokens["a"])
    other = {"Content-Type": "application/offset+octet-stream"}
    status, _, _ = await append(up, location, version, tokens["a"], 0, b"x", False, **other)
    assert status == 415
    for missing in ("Upload-Offset", "Upload-Complete"):
        headers = draft(version, tokens["a"], Upload_Offset="0", Upload_Complete="?0")
        del headers[missing]
        response = await up.patch(location, headers={**headers, **PARTIAL}, data=b"x")
        assert response.status == 400, missing
    headers = draft(version, tokens["a"], Upload_Offset="0", Upload_Complete="yes")
    assert (await up.patch(location, headers={**headers, **PARTIAL}, data=b"x")).status == 400
    assert await offset_of(up, location, version, tokens["a"]) == 0


async def test_inconsistent_lengths_are_400_problem(
    up: Client, version: int, tokens: Tokens
) -> None:
    headers = draft(version, tokens["a"], Upload_Complete="?1", Upload_Length="5")
    response = await up.put("/files/big/a.bin", headers=headers, data=b"abc")
    assert response.status == 400
    assert (await response.json())["type"] == PROBLEM_TYPES + "inconsistent-upload-length"
    location = await create_incomplete(up, version, tokens["a"], b"abc", Upload_Length="10")
    # Completing at 5 bytes an upload declared as 10.
    status, _, body = await append(up, location, version, tokens["a"], 3, b"de", True)
    assert status == 400
    assert json.loads(body)["type"] == PROBLEM_TYPES + "inconsistent-upload-length"
    status, _, body = await append(
        up, location, version, tokens["a"], 3, b"d", False, **{"Upload-Length": "11"}
    )
    assert status == 400
    assert (await up.get("/files/big/a.bin")).status == 404


async def test_over_the_limit_is_413(up: Client, version: int, tokens: Tokens) -> None:
    headers = draft(version, tokens["a"], Upload_Complete="?0", Upload_Length=str(LIMIT + 1))
    assert (await up.put("/files/big/a.bin", headers=headers)).status == 413
    location = await create_incomplete(up, version, tokens["a"], Upload_Length="10")
    status, _, _ = await append(up, location, version, tokens["a"], 0, b"x" * 11, False)
    assert status == 413


async def test_delete_cancels(up: Client, version: int, tokens: Tokens) -> None:
    location = await create_incomplete(up, version, tokens["a"], DATA[:10])
    response = await up.delete(location, headers=draft(version, tokens["a"]))
    assert response.status == 204
    assert (await up.head(location, headers=draft(version, tokens["a"]))).status == 404


async def test_options_advertise_partial_upload_and_limits(up: Client) -> None:
    for url in ("/uploads/", "/files/big/a.bin"):
        response = await up.options(url)
        assert response.status in (200, 204), url
        assert response.headers["Accept-Patch"] == "application/partial-upload"
        assert response.headers["Upload-Limit"].startswith(f"max-size={LIMIT}, max-age=")
    response = await up.options("/uploads/", headers={"Upload-Draft-Interop-Version": "6"})
    assert ", expires=" in response.headers["Upload-Limit"]


async def test_an_unspoken_version_on_an_upload_is_400(up: Client, tokens: Tokens) -> None:
    location = await create_incomplete(up, 8, tokens["a"])
    response = await up.delete(location, headers=draft(5, tokens["a"]))
    assert response.status == 400
    assert "6 and 8" in (await response.json())["error"]


# -- who may ----------------------------------------------------------------------------


async def test_another_token_sees_404(up: Client, version: int, tokens: Tokens) -> None:
    location = await create_incomplete(up, version, tokens["a"], DATA[:10])
    other = tokens["b"]
    assert (await up.head(location, headers=draft(version, other))).status == 404
    status, _, _ = await append(up, location, version, other, 10, b"x", True)
    assert status == 404
    assert (await up.delete(location, headers=draft(version, other))).status == 404
    assert await offset_of(up, location, version, tokens["a"]) == 10


async def test_authorisation_at_creation_and_append(
    up: Client, version: int, tokens: Tokens, storage_root: Path
) -> None:
    headers = draft(version, tokens["read"], Upload_Complete="?1")
    assert (await up.put("/files/big/a.bin", headers=headers, data=b"x")).status == 403
    headers = draft(version, {}, Upload_Complete="?1")
    assert (await up.put("/files/big/a.bin", headers=headers, data=b"x")).status == 401
    headers = draft(version, tokens["myproj"], Upload_Complete="?1")
    assert (await up.put("/files/other/a.bin", headers=headers, data=b"x")).status == 403
    response = await up.post("/uploads/?path=other/a.bin", headers=headers, data=b"x")
    assert response.status == 403
    response = await up.put("/files/myproj/a.bin", headers=headers, data=b"x")
    assert response.status == 201
    # A token removed after the creation can append no more.
    location = await create_incomplete(up, version, tokens["b"], b"ab")
    await asyncio.to_thread(TokenStore(storage_root).remove, "ci-b")
    await asyncio.sleep(1.1)  # the token file is reloaded every second
    status, _, _ = await append(up, location, version, tokens["b"], 2, b"c", True)
    assert status == 401
    assert (await up.get("/files/big/a.bin")).status == 404


async def test_tus_and_draft_resources_do_not_mix(up: Client, tokens: Tokens) -> None:
    location = await create_incomplete(up, 8, tokens["a"])
    tus = {"Tus-Resumable": "1.0.0", **tokens["a"]}
    assert (await up.head(location, headers=tus)).status == 404
    response = await up.post(
        "/uploads/", headers={**tus, "Upload-Length": "3", "Upload-Metadata": "path YS9i"}
    )
    assert response.status == 201
    assert (
        await up.head(response.headers["Location"], headers=draft(8, tokens["a"]))
    ).status == 404


# -- completion is a PUT's commit -------------------------------------------------------


async def test_the_creating_requests_preconditions_judge_the_completion(
    up: Client, version: int, tokens: Tokens, fs_store: FilesystemStore
) -> None:
    location = await create_incomplete(up, version, tokens["a"], b"ab", If_None_Match="*")
    await store_bytes(fs_store, "big/a.bin", b"someone else's")
    status, headers, _ = await append(up, location, version, tokens["a"], 2, b"c", True)
    assert status == 412
    assert headers["Upload-Complete"] == "?1"  # complete; processing it failed
    assert await (await up.get("/files/big/a.bin")).read() == b"someone else's"
    headers = draft(version, tokens["a"], Upload_Complete="?1", If_None_Match="*")
    assert (await up.put("/files/big/a.bin", headers=headers, data=b"x")).status == 412


async def test_the_declared_digest_is_verified(up: Client, version: int, tokens: Tokens) -> None:
    digest = hashlib.sha256(b"abc").hexdigest()
    location = await create_incomplete(up, version, tokens["a"], b"ab", X_Checksum_Sha256=digest)
    status, headers, _ = await append(up, location, version, tokens["a"], 2, b"X", True)
    assert status == 400
    assert headers["Upload-Complete"] == "?1"
    assert (await up.get("/files/big/a.bin")).status == 404
    metrics = await (await up.get("/metrics")).text()
    assert "artifactd_upload_checksum_failures_total 1.0" in metrics


async def test_immutable_refuses_the_commit(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path, tokens: Tokens
) -> None:
    settings = Settings(root=storage_root, max_upload_size=LIMIT, immutable=True)
    client = await aiohttp_client(create_app(settings, fs_store))
    location = await create_incomplete(client, 8, tokens["a"], b"new")
    await store_bytes(fs_store, "big/a.bin", b"old")
    status, _, _ = await append(client, location, 8, tokens["a"], 3, b"", True)
    assert status == 409
    assert await (await client.get("/files/big/a.bin")).read() == b"old"


async def test_expired_resources_are_404(
    up: Client, version: int, tokens: Tokens, fs_store: FilesystemStore
) -> None:
    location = await create_incomplete(up, version, tokens["a"], b"ab")
    resources = FilesystemResources(fs_store.state_dir)
    resource = await resources.load(location.rsplit("/", 1)[1])
    resource.expires_at = time.time() - 1
    await asyncio.to_thread(resources.save, resource)
    assert (await up.head(location, headers=draft(version, tokens["a"]))).status == 404
    assert await resources.remove_expired() == 1


async def test_the_memory_backend_keeps_upload_resources_too(
    aiohttp_client: ClientFactory, storage_root: Path, tokens: Tokens
) -> None:
    settings = Settings(root=storage_root, max_upload_size=LIMIT)
    client = await aiohttp_client(create_app(settings, MemoryStore()))
    headers = draft(8, tokens["a"], Upload_Complete="?1")
    response = await client.put("/files/big/a.bin", headers=headers, data=b"abc")
    assert response.status == 201
    assert response.headers["Upload-Complete"] == "?1"
    response = await client.post("/uploads/?path=a", headers=headers, data=b"abc")
    assert response.status == 201
    assert await (await client.get("/files/a")).read() == b"abc"


# -- failures ---------------------------------------------------------------------------


async def test_one_request_appends_at_a_time(
    up: Client, tokens: Tokens, fs_store: FilesystemStore
) -> None:
    location = await create_incomplete(up, 8, tokens["a"])
    resources = FilesystemResources(fs_store.state_dir)
    # Held as another worker process appending would hold it (an flock of its own).
    async with resources.appending(location.rsplit("/", 1)[-1]):
        status, _, _ = await append(up, location, 8, tokens["a"], 0, b"abc", False)
        assert status == 409
    status, _, _ = await append(up, location, 8, tokens["a"], 0, b"abc", False)
    assert status == 204


async def test_a_full_disk_keeps_what_was_received(
    up: Client, tokens: Tokens, fs_store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = await create_incomplete(up, 8, tokens["a"], b"abc")
    pwrite = os.pwrite

    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    status, _, _ = await append(up, location, 8, tokens["a"], 3, b"def", True)
    assert status == 507
    assert await offset_of(up, location, 8, tokens["a"]) == 3
    monkeypatch.setattr(os, "pwrite", pwrite)
    # Full again, at the commit: the upload stays, not complete, for a retry.
    begin_upload = fs_store.begin_upload

    async def full_store(*args: Any, **kwargs: Any) -> Any:
        raise StorageFullError("no space left on device")

    monkeypatch.setattr(fs_store, "begin_upload", full_store)
    status, _, _ = await append(up, location, 8, tokens["a"], 3, b"def", True)
    assert status == 507
    response = await up.head(location, headers=draft(8, tokens["a"]))
    assert response.headers["Upload-Offset"] == "6"
    assert response.headers["Upload-Complete"] == "?0"
    monkeypatch.setattr(fs_store, "begin_upload", begin_upload)
    status, _, _ = await append(up, location, 8, tokens["a"], 6, b"", True)
    assert status == 201
    assert await (await up.get("/files/big/a.bin")).read() == b"abcdef"


async def test_a_delete_during_an_append_cancels_it(up: Client, tokens: Tokens) -> None:
    location = await create_incomplete(up, 8, tokens["a"])
    first_piece_sent = asyncio.Event()
    deleted = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield DATA[:1000]
        first_piece_sent.set()
        await deleted.wait()
        yield DATA[1000:2000]

    headers = draft(8, tokens["a"], Upload_Offset="0", Upload_Complete="?1")
    appending = asyncio.create_task(up.patch(location, headers={**headers, **PARTIAL}, data=body()))
    await first_piece_sent.wait()
    await asyncio.sleep(0.1)
    response = await up.delete(location, headers=draft(8, tokens["a"]))
    assert response.status == 204
    deleted.set()
    response = await appending
    assert response.status == 404
    assert (await up.head(location, headers=draft(8, tokens["a"]))).status == 404
    assert (await up.get("/files/big/a.bin")).status == 404


async def test_the_completion_publishes_its_event_and_keeps_the_ttl(
    up: Client, tokens: Tokens
) -> None:
    events = up.app[EVENTS]
    before = max((e.id for e in events.since(0)), default=0)
    location = await create_incomplete(up, 8, tokens["a"], b"ab", X_Artifact_TTL="1h")
    assert [e for e in events.since(before) if e.kind != "shutdown"] == []  # nothing yet
    status, _, body = await append(up, location, 8, tokens["a"], 2, b"c", True)
    assert status == 201
    published = [e for e in events.since(before)]
    assert [(e.kind, e.data["path"]) for e in published] == [("created", "big/a.bin")]
    expires = json.loads(body)["expires_at"]
    assert expires is not None  # the creating request's TTL, applied at the commit
    metrics = await (await up.get("/metrics")).text()
    assert 'method="PATCH",route="/uploads/{upload_id}",status="201"} 1.0' in metrics


async def test_a_delete_during_the_commit_leaves_nothing(
    up: Client, tokens: Tokens, fs_store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = await create_incomplete(up, 8, tokens["a"], b"abc")
    upload_id = location.rsplit("/", 1)[1]
    begin_upload = fs_store.begin_upload

    async def cancelled_meanwhile(*args: Any, **kwargs: Any) -> Any:
        await FilesystemResources(fs_store.state_dir).remove(upload_id)
        return await begin_upload(*args, **kwargs)

    monkeypatch.setattr(fs_store, "begin_upload", cancelled_meanwhile)
    status, headers, _ = await append(up, location, 8, tokens["a"], 3, b"", True)
    assert status == 404
    assert "Upload-Complete" not in headers
    monkeypatch.setattr(fs_store, "begin_upload", begin_upload)
    assert (await up.head(location, headers=draft(8, tokens["a"]))).status == 404
    assert (await up.get("/files/big/a.bin")).status == 404


async def test_creation_over_the_open_uploads_cap_is_429(
    aiohttp_client: ClientFactory,
    fs_store: FilesystemStore,
    storage_root: Path,
    tokens: Tokens,
    version: int,
) -> None:
    """--max-open-uploads counts the draft's uploads as tus's: a creation over it is 429."""
    client = await aiohttp_client(
        create_app(Settings(root=storage_root, max_open_uploads=1), fs_store)
    )
    await create_incomplete(client, version, tokens["a"])
    refused = await client.put(
        "/files/big/b.bin", headers=draft(version, tokens["a"], Upload_Complete="?0"), data=b""
    )
    assert refused.status == 429
    assert (await client.get("/files/big/b.bin")).status == 404
    await create_incomplete(client, version, tokens["b"])  # another token's own place
