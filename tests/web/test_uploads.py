"""PUT, POST and DELETE in-process: verification, preconditions, retention, limits."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import FormData

from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.web.app import create_app
from tests.web.conftest import Client, ClientFactory, sha256_hex

BODY = b"build output\n" * 1000


def b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


async def test_put_creates_then_replaces(client: Client) -> None:
    created = await client.put("/files/ci/1/out.log", data=BODY)
    assert created.status == 201
    doc = await created.json()
    assert doc["path"] == "ci/1/out.log"
    assert doc["size"] == len(BODY)
    assert doc["sha256"] == sha256_hex(BODY)
    assert doc["etag"] == created.headers["ETag"]
    assert doc["content_type"] == "text/plain"
    assert doc["created_at"].endswith("Z")
    assert doc["expires_at"] is None
    assert created.headers["Location"] == "/files/ci/1/out.log"
    assert created.headers["Content-Type"] == "application/json; charset=utf-8"
    assert await (await client.get("/files/ci/1/out.log")).read() == BODY

    replaced = await client.put("/files/ci/1/out.log", data=b"v2")
    assert replaced.status == 200
    assert replaced.headers["ETag"] != created.headers["ETag"]


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Repr-Digest", "sha-256=:{b64}:"),
        ("Content-Digest", "sha-512=:AAAA:, sha-256=:{b64}:"),
        ("Digest", "SHA-256={b64}"),
        ("X-Checksum-Sha256", "{hex}"),
    ],
)
async def test_each_checksum_header_form_is_verified(
    client: Client, header: str, value: str
) -> None:
    good = value.format(b64=b64(BODY), hex=sha256_hex(BODY))
    ok = await client.put("/files/sum/ok", data=BODY, headers={header: good})
    assert ok.status == 201, await ok.text()

    bad = value.format(b64=b64(b"other"), hex=sha256_hex(b"other"))
    refused = await client.put("/files/sum/bad", data=BODY, headers={header: bad})
    assert refused.status == 400
    assert (await refused.json())["error"].startswith("digest mismatch")
    assert (await client.get("/files/sum/bad")).status == 404


async def test_digest_mismatch_keeps_the_previous_version(client: Client) -> None:
    await client.put("/files/keep", data=b"old")
    refused = await client.put(
        "/files/keep", data=b"new", headers={"X-Checksum-Sha256": sha256_hex(b"nope")}
    )
    assert refused.status == 400
    assert await (await client.get("/files/keep")).read() == b"old"


async def test_malformed_digest_header_is_400(client: Client) -> None:
    resp = await client.put("/files/x", data=b"x", headers={"X-Checksum-Sha256": "zz"})
    assert resp.status == 400


async def test_if_none_match_star_refuses_overwrite(client: Client) -> None:
    first = await client.put("/files/once", data=b"1", headers={"If-None-Match": "*"})
    assert first.status == 201
    second = await client.put("/files/once", data=b"2", headers={"If-None-Match": "*"})
    assert second.status == 412
    assert await (await client.get("/files/once")).read() == b"1"


async def test_the_version_is_looked_up_before_the_body_only_when_it_can_refuse(
    client: Client, fs_store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain PUT passes whatever is there, so the early lookup (a thread hop) is skipped;
    a conditional one is refused before its body is read."""
    looked_up: list[str] = []
    info = fs_store.info

    async def counted_info(path: str) -> object:
        looked_up.append(path)
        return await info(path)

    monkeypatch.setattr(fs_store, "info", counted_info)
    assert (await client.put("/files/plain", data=b"1")).status == 201
    assert (await client.put("/files/plain", data=b"2")).status == 200
    assert looked_up == []
    refused = await client.put("/files/plain", data=b"3", headers={"If-None-Match": "*"})
    assert refused.status == 412
    assert looked_up == ["plain"]
    assert await (await client.get("/files/plain")).read() == b"2"


async def test_if_match_guards_overwrite_and_delete(client: Client) -> None:
    etag = (await client.put("/files/guarded", data=b"1")).headers["ETag"]
    stale = await client.put("/files/guarded", data=b"2", headers={"If-Match": '"stale"'})
    assert stale.status == 412
    fresh = await client.put("/files/guarded", data=b"2", headers={"If-Match": etag})
    assert fresh.status == 200
    new_etag = fresh.headers["ETag"]
    assert (await client.delete("/files/guarded", headers={"If-Match": etag})).status == 412
    assert (await client.delete("/files/guarded", headers={"If-Match": new_etag})).status == 204


async def test_delete_then_404(client: Client) -> None:
    await client.put("/files/del/me", data=b"x")
    assert (await client.delete("/files/del/me")).status == 204
    assert (await client.delete("/files/del/me")).status == 404
    assert (await client.get("/files/del/me")).status == 404


async def test_ttl_from_header_and_query(client: Client) -> None:
    by_header = await (
        await client.put("/files/t1", data=b"x", headers={"X-Artifact-TTL": "1h"})
    ).json()
    by_query = await (await client.put("/files/t2?ttl=7d", data=b"x")).json()
    never = await (await client.put("/files/t3?ttl=never", data=b"x")).json()
    assert by_header["expires_at"] is not None
    assert by_query["expires_at"] > by_header["expires_at"]
    assert never["expires_at"] is None
    bad = await client.put("/files/t4?ttl=soon", data=b"x")
    assert bad.status == 400


async def test_expired_artifact_answers_404_before_eviction(client: Client) -> None:
    await client.put("/files/short", data=b"x", headers={"X-Artifact-TTL": "0s"})
    assert (await client.get("/files/short")).status == 404
    listing = await (await client.get("/files/?format=json")).json()
    assert "short" not in [e["name"] for e in listing["entries"]]


async def test_put_to_directory_path_is_refused(client: Client) -> None:
    assert (await client.put("/files/docs/", data=b"x")).status == 405
    assert (await client.put("/files/docs", data=b"x")).status == 409


async def test_put_under_a_file_is_a_conflict(client: Client) -> None:
    assert (await client.put("/files/data.bin/child", data=b"x")).status == 409


async def test_put_into_internal_state_is_404(client: Client, storage_root: Path) -> None:
    resp = await client.put("/files/.artifactd/metadata.db", data=b"x")
    assert resp.status == 404
    assert (await client.delete("/files/.artifactd/metadata.db")).status == 404
    assert (storage_root / ".artifactd" / "metadata.db").stat().st_size > 1


async def test_explicit_content_type_is_stored(client: Client) -> None:
    await client.put("/files/typed", data=b"{}", headers={"Content-Type": "application/json"})
    resp = await client.get("/files/typed")
    assert resp.headers["Content-Type"] == "application/json"


async def immutable_client(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path, **kw: object
) -> Client:
    settings = Settings(root=storage_root, **kw)  # type: ignore[arg-type]
    return await aiohttp_client(create_app(settings, fs_store))


async def test_immutable_server_refuses_overwrite_with_409(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path
) -> None:
    client = await immutable_client(aiohttp_client, fs_store, storage_root, immutable=True)
    assert (await client.put("/files/i", data=b"1")).status == 201
    assert (await client.put("/files/i", data=b"2")).status == 409
    assert await (await client.get("/files/i")).read() == b"1"


async def test_upload_over_max_size_is_413_and_stores_nothing(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path
) -> None:
    client = await immutable_client(aiohttp_client, fs_store, storage_root, max_upload_size=100)
    resp = await client.put("/files/big", data=b"x" * 101)
    assert resp.status == 413
    assert (await client.get("/files/big")).status == 404

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"y" * 50

    chunked = await client.put("/files/big2", data=chunks())
    assert chunked.status == 413
    assert (await client.get("/files/big2")).status == 404
    assert os.listdir(storage_root / ".artifactd" / "tmp") == []


async def test_chunked_upload_is_stored(client: Client) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(20):
            yield bytes([i]) * 1000

    resp = await client.put("/files/chunked.bin", data=chunks())
    assert resp.status == 201
    body = await (await client.get("/files/chunked.bin")).read()
    assert body == b"".join(bytes([i]) * 1000 for i in range(20))


async def test_multipart_post_stores_each_file(client: Client) -> None:
    form = FormData()
    form.add_field("file", b"one", filename="a.txt", content_type="text/plain")
    form.add_field("file", b"two", filename="b.bin")
    resp = await client.post("/files/up/", data=form, headers={"Accept": "application/json"})
    assert resp.status == 201, await resp.text()
    stored = (await resp.json())["stored"]
    assert [d["path"] for d in stored] == ["up/a.txt", "up/b.bin"]
    assert await (await client.get("/files/up/b.bin")).read() == b"two"


async def test_browser_form_post_redirects_to_listing(client: Client) -> None:
    form = FormData()
    form.add_field("file", b"x", filename="page.txt")
    resp = await client.post(
        "/files/docs/", data=form, headers={"Accept": "text/html"}, allow_redirects=False
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/files/docs/"


async def test_multipart_post_with_hostile_filename_is_400(client: Client) -> None:
    form = FormData()
    form.add_field("file", b"x", filename="..")
    resp = await client.post("/files/up/", data=form)
    assert resp.status == 400


async def test_wait_is_validated(client: Client) -> None:
    assert (await client.get("/files/nope?wait=301")).status == 400
    assert (await client.get("/files/nope?wait=abc")).status == 400
    assert (await client.get("/files/nope?wait=0")).status == 404


async def test_wait_is_satisfied_by_a_later_put(client: Client) -> None:
    import asyncio

    async def upload_later() -> None:
        await asyncio.sleep(0.3)
        await client.put("/files/later/result.txt", data=b"done")

    task = asyncio.create_task(upload_later())
    resp = await client.get("/files/later/result.txt?wait=10")
    await task
    assert resp.status == 200
    assert await resp.read() == b"done"


async def test_wait_times_out_with_404(client: Client) -> None:
    resp = await client.get("/files/never/there?wait=1")
    assert resp.status == 404
