"""Uploads as build caches make them, in-process: Bazel's content-addressed store checks
each blob against its name."""

from __future__ import annotations

import pytest

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
