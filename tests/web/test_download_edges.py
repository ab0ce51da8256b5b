"""Download and listing edges, in-process: Vary on listings, stale `.gz` siblings,
If-Range dates of versions changed within a second, digests asked for with Want-Digest
and Want-Repr-Digest, Content-Disposition for names a URL cannot carry as they are."""

from __future__ import annotations

import asyncio
import gzip
import html
import time

from artifactd.http.digests import repr_digest_header
from artifactd.store.filesystem import FilesystemStore
from tests.web.conftest import Client, sha256_hex, store_bytes


async def test_listings_vary_on_accept_whichever_form_they_answer(client: Client) -> None:
    for headers in ({"Accept": "text/html"}, {"Accept": "application/json"}, {}):
        resp = await client.get("/files/docs/", headers=headers)
        assert resp.status == 200
        assert "Accept" in [v.strip() for v in resp.headers["Vary"].split(",")]
    by_query = await client.get("/files/?format=json")
    assert "Accept" in by_query.headers["Vary"]


async def within_one_second() -> None:
    """Wait for the start of a second, so a few quick requests share it."""
    await asyncio.sleep(1 - time.time() % 1 + 0.01)


async def test_if_range_date_of_a_version_replaced_within_the_second_gets_the_whole_body(
    client: Client,
) -> None:
    """A resume with If-Range: <date> after a same-second replacement must not glue the
    first version's head to the second's tail (RFC 9110 §13.1.5, §8.8.2.2)."""
    first, second = b"A" * 5000, b"B" * 5000
    for _attempt in range(5):
        await within_one_second()
        assert (await client.put("/files/glue.bin", data=first)).status in (200, 201)
        head = await client.get("/files/glue.bin", headers={"Range": "bytes=0-999"})
        assert head.status == 206
        last_modified = head.headers["Last-Modified"]
        assert await head.read() == first[:1000]
        assert (await client.put("/files/glue.bin", data=second)).status == 200
        resumed = await client.get(
            "/files/glue.bin", headers={"Range": "bytes=1000-", "If-Range": last_modified}
        )
        body = await resumed.read()
        if time.time() % 1 > 0.9:
            continue  # too close to the next second to be sure it was shared: again
        assert resumed.status == 200
        assert body == second
        return
    raise AssertionError("never managed three requests within one second")


async def test_if_range_date_of_a_settled_version_still_resumes(client: Client) -> None:
    data = bytes(range(256)) * 20
    assert (await client.put("/files/settled.bin", data=data)).status == 201
    await asyncio.sleep(1.05)  # its Last-Modified second is over: a strong validator now
    first = await client.get("/files/settled.bin", headers={"Range": "bytes=0-9"})
    resumed = await client.get(
        "/files/settled.bin",
        headers={"Range": "bytes=10-", "If-Range": first.headers["Last-Modified"]},
    )
    assert resumed.status == 206
    assert await resumed.read() == data[10:]


TEXT_V1 = b"first version of the notes\n" * 200
TEXT_V2 = b"second version, longer notes\n" * 300


async def test_a_gz_sibling_older_than_the_artifact_is_not_served(
    client: Client, fs_store: FilesystemStore
) -> None:
    await store_bytes(fs_store, "r.txt", TEXT_V1)
    await store_bytes(fs_store, "r.txt.gz", gzip.compress(TEXT_V1, mtime=0))
    fresh = await client.get("/files/r.txt", headers={"Accept-Encoding": "gzip"})
    # (the client decompresses) a current sibling is served: its own length and digest
    assert await fresh.read() == TEXT_V1
    assert fresh.headers["Content-Encoding"] == "gzip"
    old_digest = repr_digest_header(sha256_hex(gzip.compress(TEXT_V1, mtime=0)))
    assert fresh.headers["Repr-Digest"] == old_digest
    await asyncio.sleep(0.05)  # file times move in clock ticks
    await store_bytes(fs_store, "r.txt", TEXT_V2)
    for method in ("GET", "HEAD"):
        resp = await client.request(method, "/files/r.txt", headers={"Accept-Encoding": "gzip"})
        assert resp.status == 200
        assert resp.headers.get("Repr-Digest") != old_digest
        if method == "GET":
            assert await resp.read() == TEXT_V2  # (decompressed by the client if need be)


async def test_http_1_0_asking_for_gzip_gets_a_body_without_chunks(
    client: Client, fs_store: FilesystemStore
) -> None:
    await store_bytes(fs_store, "notes.txt", TEXT_V1)
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(b"GET /files/notes.txt HTTP/1.0\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    assert status_line.split()[1] == "200", raw[:500]
    assert "chunked" not in headers.get("transfer-encoding", "")
    assert headers["vary"] == "Accept-Encoding"
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    assert body == TEXT_V1

    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(b"HEAD /files/notes.txt HTTP/1.0\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert raw.startswith(b"HTTP/1.0 200 "), raw[:500]
    assert b"chunked" not in raw.lower()


SPACED_DISPOSITION = "attachment; filename=\"notes v1.txt\"; filename*=UTF-8''notes%20v1.txt"


async def test_every_variant_of_a_spaced_name_is_named_after_the_artifact(
    client: Client, fs_store: FilesystemStore
) -> None:
    await store_bytes(fs_store, "notes v1.txt", TEXT_V1)
    for headers in ({}, {"Accept-Encoding": "gzip"}, {"Range": "bytes=0-9"}):
        resp = await client.get("/files/notes%20v1.txt", headers=headers)
        assert resp.headers["Content-Disposition"] == SPACED_DISPOSITION, headers
    await store_bytes(fs_store, "notes v1.txt.gz", gzip.compress(TEXT_V1))
    sibling = await client.get("/files/notes%20v1.txt", headers={"Accept-Encoding": "gzip"})
    assert sibling.headers["Content-Encoding"] == "gzip"
    assert "Content-Length" in sibling.headers  # the sibling, not compressed on the fly
    assert sibling.headers["Content-Disposition"] == SPACED_DISPOSITION
    plain = await client.get("/files/data.bin")
    assert "Content-Disposition" not in plain.headers


async def test_browse_page_suggests_commands_that_save_the_real_name(
    client: Client, fs_store: FilesystemStore
) -> None:
    await store_bytes(fs_store, "n/a b.txt", b"x")
    await store_bytes(fs_store, "n/it's café.txt", b"x")
    await store_bytes(fs_store, "n/plain.txt", b"x")
    page = html.unescape(await (await client.get("/files/n/")).text())
    origin = f"http://{client.host}:{client.port}"
    assert f"curl -fo 'a b.txt' {origin}/files/n/a%20b.txt" in page
    assert f"curl -fo 'it'\"'\"'s café.txt' {origin}/files/n/it%27s%20caf%C3%A9.txt" in page
    assert f"curl -fO {origin}/files/n/plain.txt" in page
    assert "curl -fO " + origin + "/files/n/a%20b.txt" not in page


async def test_browse_page_quotes_a_hostile_host_in_its_commands(client: Client) -> None:
    page = await (await client.get("/files/docs/", headers={"Host": "x;touch${IFS}p"})).text()
    assert "curl -fO 'http://x;touch${IFS}p/files/docs/readme.txt'" in html.unescape(page)
