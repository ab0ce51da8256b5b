"""Uploads as build caches make them, in-process: Bazel's content-addressed store checks
each blob against its name; re-uploading the bytes already stored writes nothing new."""

from __future__ import annotations

from pathlib import Path

import pytest

from artifactd.web.keys import EVENTS
from artifactd.web.uploads import content_address
from tests.web.conftest import Client, sha256_hex

BLOB = b"bazel output\n" * 100
DIGEST = sha256_hex(BLOB)


@pytest.mark.parametrize(
    ("path", "named"),
    [
        (f"bazel/cas/{DIGEST}", DIGEST),
        (f"cas/{DIGEST}", DIGEST),
        (f"bazel/cas/ab/{DIGEST}", DIGEST),  # under a cas/ segment, not only right below it
        (f"bazel/cas/{DIGEST.upper()}", DIGEST),
        (f"bazel/ac/{DIGEST}", None),  # the action cache is keyed by the action, not its bytes
        (f"bazel/mycas/{DIGEST}", None),
        (f"bazel/cas/{DIGEST[:-1]}", None),
        (f"bazel/cas/{DIGEST}.txt", None),
        (f"{DIGEST}/cas", None),
        (DIGEST, None),
    ],
)
def test_content_address(path: str, named: str | None) -> None:
    assert content_address(path) == named


async def test_a_cas_blob_that_hashes_to_its_name_is_stored(client: Client) -> None:
    response = await client.put(f"/files/bazel/cas/{DIGEST}", data=BLOB)
    assert response.status == 201
    assert (await response.json())["sha256"] == DIGEST
    assert await (await client.get(f"/files/bazel/cas/{DIGEST}")).read() == BLOB


@pytest.mark.parametrize("name", [sha256_hex(b"something else"), "0" * 64])
async def test_a_cas_blob_that_does_not_hash_to_its_name_is_400_and_stores_nothing(
    client: Client, name: str
) -> None:
    response = await client.put(f"/files/bazel/cas/{name}", data=BLOB)
    assert response.status == 400
    assert (await response.json())["error"].startswith("digest mismatch")
    assert (await client.get(f"/files/bazel/cas/{name}")).status == 404
    assert (await client.get("/files/bazel/cas/")).status == 404  # not even the directory


async def test_a_cas_mismatch_keeps_the_blob_already_there(client: Client) -> None:
    assert (await client.put(f"/files/bazel/cas/{DIGEST}", data=BLOB)).status == 201
    assert (await client.put(f"/files/bazel/cas/{DIGEST}", data=b"poison")).status == 400
    assert await (await client.get(f"/files/bazel/cas/{DIGEST}")).read() == BLOB


async def test_a_declared_digest_contradicting_the_cas_name_is_refused_before_the_body(
    client: Client,
) -> None:
    headers = {"X-Checksum-Sha256": sha256_hex(b"poison"), "Expect": "100-continue"}
    response = await client.put(f"/files/bazel/cas/{DIGEST}", data=BLOB, headers=headers)
    assert response.status == 400
    assert (await client.get(f"/files/bazel/cas/{DIGEST}")).status == 404
    agreeing = {"X-Checksum-Sha256": DIGEST}
    ok = await client.put(f"/files/bazel/cas/{DIGEST}", data=BLOB, headers=agreeing)
    assert ok.status == 201


async def test_other_bazel_keys_take_any_bytes(client: Client) -> None:
    response = await client.put(f"/files/bazel/ac/{DIGEST}", data=b"an action result")
    assert response.status == 201


async def test_re_putting_the_same_bytes_writes_nothing_and_restarts_the_ttl(
    client: Client, storage_root: Path
) -> None:
    url = f"/files/bazel/cas/{DIGEST}"
    first = await client.put(url, data=BLOB, headers={"X-Artifact-TTL": "60"})
    assert first.status == 201
    before = (storage_root / "bazel" / "cas" / DIGEST).stat()
    events = client.app[EVENTS]
    published_before = len(list(events.since(0)))
    again = await client.put(url, data=BLOB, headers={"X-Artifact-TTL": "3600"})
    assert again.status == 200
    assert again.headers["ETag"] == first.headers["ETag"]
    doc, first_doc = await again.json(), await first.json()
    assert doc["created_at"] == first_doc["created_at"]
    assert doc["expires_at"] > first_doc["expires_at"]
    head = await client.head(url)
    assert head.headers["ETag"] == first.headers["ETag"]
    info = await (await client.get(f"/api/v1/artifacts/bazel/cas/{DIGEST}")).json()
    assert info["expires_at"] == doc["expires_at"]
    after = (storage_root / "bazel" / "cas" / DIGEST).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert len(list(events.since(0))) == published_before  # no "replaced" event
    assert list((storage_root / ".artifactd" / "tmp").iterdir()) == []


async def test_re_putting_other_bytes_still_replaces(client: Client) -> None:
    assert (await client.put("/files/ccache/ab/cd", data=b"one")).status == 201
    replaced = await client.put("/files/ccache/ab/cd", data=b"two")
    assert replaced.status == 200
    assert await (await client.get("/files/ccache/ab/cd")).read() == b"two"
