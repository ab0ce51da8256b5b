"""gzip variants: on the fly, precompressed siblings, never for ranges."""

from __future__ import annotations

import gzip

import pytest

from artifactd.store.filesystem import FilesystemStore
from artifactd.web.download.gzip import accepts_gzip, gzip_etag, is_compressible
from tests.web.conftest import Client, store_bytes

LOG = b"".join(b"line %d: something happened\n" % i for i in range(2000))


@pytest.fixture
async def log_client(client: Client, fs_store: FilesystemStore) -> Client:
    await store_bytes(fs_store, "ci/build.log", LOG)
    return client


async def test_gzip_is_sent_when_accepted_with_its_own_etag(log_client: Client) -> None:
    identity = await log_client.get(
        "/files/ci/build.log", headers={"Accept-Encoding": "identity"}, auto_decompress=False
    )
    assert identity.headers.get("Content-Encoding") is None
    assert identity.headers["Vary"] == "Accept-Encoding"

    resp = await log_client.get(
        "/files/ci/build.log", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert resp.status == 200
    assert resp.headers["Content-Encoding"] == "gzip"
    assert resp.headers["Vary"] == "Accept-Encoding"
    assert resp.headers["ETag"] == gzip_etag(identity.headers["ETag"])
    assert resp.headers["ETag"] != identity.headers["ETag"]
    assert "Repr-Digest" not in resp.headers
    body = await resp.read()
    assert len(body) < len(LOG) / 5
    assert gzip.decompress(body) == LOG


async def test_gzip_variant_revalidates_with_its_etag(log_client: Client) -> None:
    first = await log_client.get("/files/ci/build.log", headers={"Accept-Encoding": "gzip"})
    again = await log_client.get(
        "/files/ci/build.log",
        headers={"Accept-Encoding": "gzip", "If-None-Match": first.headers["ETag"]},
    )
    assert again.status == 304
    assert again.headers["ETag"] == first.headers["ETag"]


async def test_range_request_is_never_encoded(log_client: Client) -> None:
    resp = await log_client.get(
        "/files/ci/build.log",
        headers={"Accept-Encoding": "gzip", "Range": "bytes=0-99"},
        auto_decompress=False,
    )
    assert resp.status == 206
    assert "Content-Encoding" not in resp.headers
    assert await resp.read() == LOG[:100]


async def test_binary_and_small_files_are_not_compressed(client: Client) -> None:
    resp = await client.get("/files/data.bin", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in resp.headers
    assert "Vary" not in resp.headers
    small = await client.get("/files/docs/readme.txt", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers


async def test_precompressed_sibling_is_served(
    log_client: Client, fs_store: FilesystemStore
) -> None:
    packed = gzip.compress(LOG, compresslevel=9)
    await store_bytes(fs_store, "ci/build.log.gz", packed)
    resp = await log_client.get(
        "/files/ci/build.log", headers={"Accept-Encoding": "gzip, br"}, auto_decompress=False
    )
    assert resp.headers["Content-Encoding"] == "gzip"
    assert resp.headers["Content-Type"] == "text/plain"
    assert resp.headers["Content-Length"] == str(len(packed))
    assert await resp.read() == packed


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("br", False),
        ("*", True),
        ("*, gzip;q=0", False),
        ("identity", False),
        (None, False),
        ("x-gzip", True),
    ],
)
def test_accept_encoding_parsing(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/plain", True),
        ("text/html; charset=utf-8", True),
        ("application/json", True),
        ("application/gzip", False),
        ("application/octet-stream", False),
    ],
)
def test_compressible_types(content_type: str, expected: bool) -> None:
    assert is_compressible(content_type) is expected
