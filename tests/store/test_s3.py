"""The S3 backend against a real SeaweedFS: ranged GETs, multipart uploads, the local cache,
several nodes on one bucket, the maintenance lease and outages.

The storage contract itself runs against S3 in test_contract.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from artifactd.errors import (
    ArtifactReplacedError,
    ConflictError,
    DigestMismatchError,
    IsDirectoryError,
    NotFoundError,
    PreconditionFailedError,
    StoreUnavailableError,
)
from artifactd.store.base import ArtifactInfo
from artifactd.store.readers import FileReader
from artifactd.store.s3 import MIN_PART_BYTES, S3Reader, S3Store
from tests.seaweed import (  # the fixtures register as `seaweed` and `s3_bucket`
    Seaweed,
    aws_environment,
    open_s3_store,
    s3_bucket_fixture,  # noqa: F401
    s3_versioned_bucket_fixture,  # noqa: F401
    seaweed_fixture,  # noqa: F401
)
from tests.store.assertions import assert_nothing_at

MiB = 1024 * 1024


@pytest.fixture
async def node_a(seaweed: Seaweed, s3_bucket: str, tmp_path: Path) -> AsyncIterator[S3Store]:
    """One artifactd node on the test's bucket, with a local cache filled on first open."""
    store = await open_s3_store(
        seaweed,
        s3_bucket,
        cache_dir=tmp_path / "cache-a",
        cache_max_size=64 * MiB,
        cache_fill_after_opens=1,
        part_size_bytes=MIN_PART_BYTES,
    )
    yield store
    await store.close()


@pytest.fixture
async def node_b(seaweed: Seaweed, s3_bucket: str) -> AsyncIterator[S3Store]:
    """A second node on the same bucket, without a cache."""
    store = await open_s3_store(seaweed, s3_bucket, part_size_bytes=MIN_PART_BYTES)
    yield store
    await store.close()


async def put(
    store: S3Store, path: str, data: bytes, *, chunk_size: int = 64 * 1024
) -> ArtifactInfo:
    upload = await store.begin_upload(path)
    for i in range(0, len(data), chunk_size):
        await upload.write(data[i : i + chunk_size])
    info, _ = await upload.commit()
    return info


async def read_all(store: S3Store, path: str) -> bytes:
    async with await store.open(path) as reader:
        return await read_reader(reader)


async def read_reader(reader: Any, chunk_size: int = 64 * 1024) -> bytes:
    data = bytearray()
    while len(data) < reader.info.size:
        chunk = await reader.read(len(data), chunk_size)
        assert chunk
        data += chunk
    return bytes(data)


def record_gets(store: S3Store, path: str) -> list[str]:
    """The Range header of every GetObject of `path` the store sends from now on."""
    ranges: list[str] = []

    def before_send(request: Any, **_: Any) -> None:
        if request.url.endswith(f"/artifacts/{path}"):
            ranges.append(request.headers.get("Range", b"").decode() or "whole")

    store.bucket.client.meta.events.register("before-send.s3.GetObject", before_send)
    return ranges


def pending_multipart_uploads(seaweed: Seaweed, bucket: str) -> list[Any]:
    uploads: list[Any] = seaweed.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return uploads


# -- reads ---------------------------------------------------------------------------------


async def test_one_byte_read_of_a_large_object_is_one_one_byte_get(node_b: S3Store) -> None:
    data = bytes(range(256)) * (8 * 4096)  # 8 MiB, uploaded in two parts
    await put(node_b, "big.bin", data, chunk_size=MiB)
    gets = record_gets(node_b, "big.bin")
    async with await node_b.open("big.bin") as reader:
        assert await reader.read(7 * MiB + 3, 1) == data[7 * MiB + 3 : 7 * MiB + 4]
    assert gets == [f"bytes={7 * MiB + 3}-{7 * MiB + 3}"]


async def test_sequential_reads_fetch_ahead_in_a_few_ranged_gets(node_b: S3Store) -> None:
    data = hashlib.sha256(b"seed").digest() * (3 * MiB // 32)
    await put(node_b, "seq.bin", data, chunk_size=MiB)
    gets = record_gets(node_b, "seq.bin")
    async with await node_b.open("seq.bin") as reader:
        assert await read_reader(reader) == data
    assert all(r.startswith("bytes=") for r in gets)
    assert len(gets) <= 8  # 48 chunks of 64 KiB, fetched up to 1 MiB at a time
    async with await node_b.open("seq.bin") as reader:
        assert reader.read_now(0, 10) is None  # nothing fetched yet
        await reader.read(0, 64 * 1024)
        await reader.read(64 * 1024, 64 * 1024)  # sequential: fetched ahead
        assert reader.read_now(128 * 1024, 64 * 1024) == data[128 * 1024 : 192 * 1024]


async def test_reader_without_a_local_copy_fails_rather_than_mix_versions(
    node_a: S3Store, node_b: S3Store
) -> None:
    await put(node_b, "v.bin", b"A" * 300_000)
    async with await node_b.open("v.bin") as reader:
        assert await reader.read(0, 1000) == b"A" * 1000
        await put(node_a, "v.bin", b"B" * 300_000)  # another node replaces it
        with pytest.raises(ArtifactReplacedError):
            await reader.read(200_000, 1000)


# -- uploads -------------------------------------------------------------------------------


async def test_multipart_upload_commits_whole_with_its_digest(
    node_a: S3Store, node_b: S3Store
) -> None:
    data = b"0123456789abcdef" * (MIN_PART_BYTES // 16) + b"tail"
    info = await put(node_a, "mp/app.tar.gz", data, chunk_size=MiB)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    seen_by_b = await node_b.info("mp/app.tar.gz")
    assert (seen_by_b.sha256, seen_by_b.etag, seen_by_b.size) == (info.sha256, info.etag, len(data))
    assert seen_by_b.content_type == "application/gzip"
    assert await read_all(node_b, "mp/app.tar.gz") == data


async def test_multipart_digest_mismatch_leaves_nothing_behind(
    node_a: S3Store, seaweed: Seaweed, s3_bucket: str
) -> None:
    upload = await node_a.begin_upload("mp/bad")
    await upload.write(b"x" * (MIN_PART_BYTES + 10))
    assert pending_multipart_uploads(seaweed, s3_bucket)  # the upload really was multipart
    with pytest.raises(DigestMismatchError):
        await upload.commit(hashlib.sha256(b"something else").hexdigest())
    with pytest.raises(NotFoundError):
        await node_a.open("mp/bad")
    await assert_nothing_at(node_a, "mp")
    assert pending_multipart_uploads(seaweed, s3_bucket) == []


async def test_commit_judges_require_against_a_version_committed_meanwhile(
    node_a: S3Store, node_b: S3Store
) -> None:
    slow = await node_a.begin_upload("race")
    await slow.write(b"slow")
    await put(node_b, "race", b"fast")
    with pytest.raises(PreconditionFailedError):
        await slow.commit(require=if_none_match_star)
    assert await read_all(node_a, "race") == b"fast"


def if_none_match_star(current: ArtifactInfo | None) -> None:
    if current is not None:
        raise PreconditionFailedError("exists")


async def test_what_a_head_saw_before_another_node_wrote_never_decides_a_commit(
    node_a: S3Store, node_b: S3Store
) -> None:
    # Node A looks (nothing there, then version one) just before each commit, as a
    # conditional PUT does before its body; node B writes in between. The commit starts
    # from what A saw (trusted whatever the machine's load), but is judged on what is there.
    node_a.objects.clock = lambda: 0.0
    with pytest.raises(NotFoundError):
        await node_a.info("new")
    await put(node_b, "new", b"B was first")
    upload = await node_a.begin_upload("new")
    await upload.write(b"A")
    with pytest.raises(PreconditionFailedError):
        await upload.commit(require=if_none_match_star)
    assert await read_all(node_b, "new") == b"B was first"

    seen = await node_a.info("new")
    await node_b.delete("new")
    upload = await node_a.begin_upload("new")
    await upload.write(b"A again")
    _, replaced = await upload.commit(require=if_none_match_star)  # refused by no guess
    assert (replaced, await read_all(node_b, "new")) == (False, b"A again")

    await node_a.info("new")
    await node_b.delete("new")
    upload = await node_a.begin_upload("new")
    await upload.write(b"A again")  # the bytes A saw there: kept by no guess either
    _, replaced = await upload.commit()
    assert (replaced, await read_all(node_b, "new")) == (False, b"A again")

    seen = await node_a.info("new")
    await put(node_b, "new", b"B replaced it")

    def if_match_seen(current: ArtifactInfo | None) -> None:
        if current is None or current.etag != seen.etag:
            raise PreconditionFailedError("changed")

    upload = await node_a.begin_upload("new")
    await upload.write(b"A once more")
    with pytest.raises(PreconditionFailedError):
        await upload.commit(require=if_match_seen)
    assert await read_all(node_a, "new") == b"B replaced it"


async def test_stale_multipart_uploads_are_aborted_but_live_ones_kept(
    seaweed: Seaweed, s3_bucket: str
) -> None:
    store = await open_s3_store(
        seaweed, s3_bucket, stale_upload_age_seconds=0, part_size_bytes=MIN_PART_BYTES
    )
    try:
        seaweed.client.create_multipart_upload(Bucket=s3_bucket, Key="artifacts/crashed")
        live = await store.begin_upload("live")
        await live.write(b"y" * (MIN_PART_BYTES + 1))
        assert await store.collect_garbage() >= 1
        assert [u["Key"] for u in pending_multipart_uploads(seaweed, s3_bucket)] == [
            "artifacts/live"
        ]
        await live.commit()
        assert pending_multipart_uploads(seaweed, s3_bucket) == []
    finally:
        await store.close()


# -- the local cache -----------------------------------------------------------------------


async def test_hot_artifact_is_filled_then_served_from_the_cache(node_a: S3Store) -> None:
    data = b"cached bytes " * 1000
    await put(node_a, "hot.txt", data)
    first = await node_a.open("hot.txt")
    assert isinstance(first, S3Reader)
    await first.aclose()
    await node_a.drain_cache_fills()
    gets = record_gets(node_a, "hot.txt")
    async with await node_a.open("hot.txt") as second:
        assert isinstance(second, FileReader)
        assert await read_reader(second) == data
    assert gets == []


async def test_cache_never_serves_a_replaced_version(node_a: S3Store, node_b: S3Store) -> None:
    await put(node_a, "r.txt", b"version one")
    await (await node_a.open("r.txt")).aclose()
    await node_a.drain_cache_fills()
    await put(node_b, "r.txt", b"version two, from node B")
    assert await read_all(node_a, "r.txt") == b"version two, from node B"


async def test_reader_replaced_mid_read_finishes_from_the_cache(
    node_a: S3Store, node_b: S3Store
) -> None:
    await put(node_a, "m.bin", b"1" * 200_000)
    reader = await node_a.open("m.bin")  # served from S3, and schedules a fill
    assert isinstance(reader, S3Reader)
    await node_a.drain_cache_fills()
    await put(node_b, "m.bin", b"2" * 200_000)
    assert await read_reader(reader) == b"1" * 200_000
    await reader.aclose()


async def test_cache_is_trimmed_to_its_size_bound_least_recently_used_first(
    seaweed: Seaweed, s3_bucket: str, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    store = await open_s3_store(
        seaweed, s3_bucket, cache_dir=cache_dir, cache_max_size=4000, cache_fill_after_opens=1
    )
    try:
        for i in range(8):  # 8 x 900 bytes through a 4000-byte cache
            await put(store, f"t/{i}", bytes([i]) * 900)
            await (await store.open(f"t/{i}")).aclose()
            await store.drain_cache_fills()
        cached = [p for p in (cache_dir / "objects").rglob("*") if p.is_file()]
        assert sum(p.stat().st_size for p in cached) <= 4000
        assert len(cached) == 4
        assert isinstance(await store.open("t/7"), FileReader)  # the newest survived
        assert isinstance(await store.open("t/0"), S3Reader)  # the oldest went
        await store.trim_cache()
    finally:
        await store.close()


# -- several nodes, one bucket ---------------------------------------------------------------


async def test_nodes_see_each_others_uploads_and_deletes_with_the_same_etag(
    node_a: S3Store, node_b: S3Store
) -> None:
    info = await put(node_a, "ci/42/app.zip", b"artifact")
    assert (await node_b.info("ci/42/app.zip")).etag == info.etag
    assert [(e.name, e.sha256) for e in await node_b.list_dir("ci/42")] == [
        ("app.zip", info.sha256)
    ]
    await node_b.delete("ci/42/app.zip")
    with pytest.raises(NotFoundError):
        await node_a.open("ci/42/app.zip")
    await assert_nothing_at(node_a, "ci")


async def test_a_file_is_put_where_a_directory_was(node_a: S3Store, node_b: S3Store) -> None:
    # SeaweedFS keeps an emptied directory (`d`; `e` and `e/s`; `f/s`) after the last key
    # under it goes, and refuses If-None-Match: * over it: the commit removes the leftovers.
    await put(node_a, "d/x", b"x")
    await node_a.delete("d/x")
    for path in ("e/s/x", "f/s/x"):
        await put(node_a, path, b"x")
        await node_b.delete(path)
    await put(node_a, "f/y", b"y")
    for store, path in ((node_a, "d"), (node_a, "e"), (node_b, "f/s")):
        info = await put(store, path, f"a file at {path}".encode())
        assert await read_all(node_b, path) == f"a file at {path}".encode()
        assert (await node_a.info(path)).etag == info.etag
    assert [(e.name, e.type) for e in await node_b.list_dir("")] == [
        ("f", "dir"),
        ("d", "file"),
        ("e", "file"),
    ]
    assert [(e.name, e.type) for e in await node_b.list_dir("f")] == [
        ("s", "file"),
        ("y", "file"),
    ]
    # A multipart upload's CompleteMultipartUpload is refused the same way.
    await put(node_a, "big/x", b"x")
    await node_a.delete("big/x")
    data = bytes(range(256)) * (MIN_PART_BYTES // 256 + 1)
    info = await put(node_a, "big", data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert await read_all(node_b, "big") == data


async def test_a_directory_a_versioned_seaweedfs_bucket_keeps_is_a_prompt_409(
    seaweed: Seaweed, s3_versioned_bucket: str
) -> None:
    # The old versions of `d/x` stay in the directory `d`, which SeaweedFS then cannot
    # remove: a conflict after one try at removing it, not after every attempt.
    store = await open_s3_store(seaweed, s3_versioned_bucket)
    try:
        await put(store, "d/x", b"x")
        await store.delete("d/x")
        sent: list[str] = []
        store.bucket.client.meta.events.register(
            "before-send.s3", lambda event_name, **_: sent.append(event_name.rsplit(".")[-1])
        )
        with pytest.raises(ConflictError, match="keeps a directory"):
            await put(store, "d", b"a file")
        assert sent.count("PutObject") == 2 and sent.count("DeleteObject") == 1
    finally:
        await store.close()


async def test_a_key_written_under_a_leftover_directory_meanwhile_is_kept(
    node_a: S3Store, node_b: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await put(node_a, "d/x", b"x")
    await node_a.delete("d/x")
    request = node_a.bucket.request

    async def another_node_writes_under_d(operation: str, **params: Any) -> dict[str, Any]:
        if operation == "delete_object" and params["Key"] == "artifacts/d/":
            # Between the commit's look (nothing under `d/`) and its removal of the leftover.
            await put(node_b, "d/y", b"y")
        return await request(operation, **params)

    monkeypatch.setattr(node_a.bucket, "request", another_node_writes_under_d)
    upload = await node_a.begin_upload("d")
    await upload.write(b"a file")
    with pytest.raises(IsDirectoryError):
        await upload.commit()
    assert await read_all(node_a, "d/y") == b"y"


async def test_a_parent_this_node_deleted_under_is_checked_again(
    node_a: S3Store, node_b: S3Store
) -> None:
    await put(node_a, "d/x", b"x")  # node A now knows `d` for a directory...
    await node_a.delete("d/x")  # ...until it empties it
    await put(node_b, "d", b"a file now")
    upload = await node_a.begin_upload("d/y")
    await upload.write(b"y")
    with pytest.raises(ConflictError):
        await upload.commit()
    await assert_nothing_at(node_a, "d/y")


async def test_a_known_directory_is_trusted_only_for_a_few_seconds(
    node_a: S3Store, node_b: S3Store
) -> None:
    await put(node_a, "e/x", b"x")
    await node_b.delete("e/x")  # another node empties `e`, and a file is put there
    await put(node_b, "e", b"a file now")
    known = node_a.writes.directories
    known.clock = lambda: time.monotonic() + known.trusted_seconds
    upload = await node_a.begin_upload("e/y")
    await upload.write(b"y")
    with pytest.raises(ConflictError):
        await upload.commit()
    await assert_nothing_at(node_a, "e/y")


async def test_evict_spares_a_version_uploaded_meanwhile(node_a: S3Store, node_b: S3Store) -> None:
    old = await put(node_a, "e", b"old bytes")
    await put(node_b, "e", b"new bytes")
    assert not await node_a.evict(old)
    current = await node_a.info("e")
    assert await node_a.evict(current)
    await assert_nothing_at(node_a, "e")


async def test_access_times_are_shared_through_the_bucket(node_a: S3Store, node_b: S3Store) -> None:
    info = await put(node_a, "seen", b"x")
    await node_a.record_access("seen")
    await node_a.flush_access_times()
    [listed] = [i async for i in node_b.iter_artifacts()]
    assert listed.last_accessed is not None and listed.last_accessed >= info.created_at
    async with node_b.maintenance_lock() as acquired:
        assert acquired
        await node_b.collect_garbage()  # folds the batches into one object
    [listed] = [i async for i in node_a.iter_artifacts()]
    assert listed.last_accessed is not None and listed.last_accessed >= info.created_at


async def test_internal_state_never_shows_as_artifacts(
    node_a: S3Store, seaweed: Seaweed, s3_bucket: str
) -> None:
    await put(node_a, "visible", b"v")
    await node_a.record_access("visible")
    await node_a.flush_access_times()
    async with node_a.maintenance_lock():
        keys = [o["Key"] for o in seaweed.client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
        assert any(k.startswith("artifacts/.artifactd/") for k in keys)
        assert [e.name for e in await node_a.list_dir("")] == ["visible"]
        assert [i.path async for i in node_a.iter_artifacts()] == ["visible"]
        with pytest.raises(NotFoundError):
            await node_a.open(".artifactd/maintenance.lease")


async def test_names_with_spaces_and_non_ascii_round_trip(node_a: S3Store, node_b: S3Store) -> None:
    path = "dir with space/ünïcode + 100%.txt"
    info = await put(node_a, path, b"u")
    assert [e.name for e in await node_b.list_dir("dir with space")] == ["ünïcode + 100%.txt"]
    assert (await node_b.info(path)).etag == info.etag


async def test_keys_that_are_not_safe_paths_are_never_listed(
    node_a: S3Store, seaweed: Seaweed, s3_bucket: str
) -> None:
    for key in ("artifacts/tab\tname", "artifacts/dir-marker/"):  # SeaweedFS refuses ".."
        seaweed.client.put_object(Bucket=s3_bucket, Key=key, Body=b"?")
    await put(node_a, "ok", b"fine")
    assert [i.path async for i in node_a.iter_artifacts()] == ["ok"]


async def test_objects_put_by_other_tools_are_served_with_an_s3_etag(
    node_a: S3Store, seaweed: Seaweed, s3_bucket: str
) -> None:
    seaweed.client.put_object(
        Bucket=s3_bucket, Key="artifacts/docs/readme.md", Body=b"# hi", ContentType="text/x-md"
    )
    info = await node_a.info("docs/readme.md")
    assert (info.sha256, info.content_type, info.size) == (None, "text/x-md", 4)
    assert info.etag.startswith('"v-')
    assert await read_all(node_a, "docs/readme.md") == b"# hi"


async def test_verify_finds_bytes_that_no_longer_match_their_digest(
    node_a: S3Store, seaweed: Seaweed, s3_bucket: str
) -> None:
    await put(node_a, "good", b"good bytes")
    await put(node_a, "bad", b"original")
    head = seaweed.client.head_object(Bucket=s3_bucket, Key="artifacts/bad")
    seaweed.client.put_object(  # bytes changed behind artifactd's back, metadata kept
        Bucket=s3_bucket, Key="artifacts/bad", Body=b"tampered", Metadata=head["Metadata"]
    )
    results = {v.path: v.ok async for v in node_a.verify()}
    assert results == {"bad": False, "good": True}


# -- the maintenance lease -----------------------------------------------------------------


async def test_maintenance_lease_is_held_by_one_node_at_a_time(
    node_a: S3Store, node_b: S3Store
) -> None:
    async with node_a.maintenance_lock() as a_holds:
        assert a_holds
        async with node_b.maintenance_lock() as b_holds:
            assert not b_holds
    async with node_b.maintenance_lock() as b_holds:
        assert b_holds


@pytest.mark.slow
async def test_lease_of_a_node_that_stopped_renewing_expires(
    seaweed: Seaweed, s3_bucket: str
) -> None:
    # Last-Modified has whole-second resolution: a lease much shorter than a few seconds
    # could look expired the moment it is written.
    live = await open_s3_store(seaweed, s3_bucket, lease_seconds=3.0)
    dead = await open_s3_store(seaweed, s3_bucket, lease_seconds=3.0)
    try:
        async with live.maintenance_lock() as held:
            assert held
            await asyncio.sleep(4)  # renewed meanwhile, so still not up for grabs
            async with dead.maintenance_lock() as taken:
                assert not taken
        assert await dead.lease.acquire() is not None  # a node that then died holding it
        async with live.maintenance_lock() as taken:
            assert not taken
        await wait_until(lambda: live.maintenance_lock(), timeout_seconds=10)
    finally:
        await live.close()
        await dead.close()


async def wait_until(lock: Callable[[], Any], *, timeout_seconds: float) -> None:
    """Retry taking a maintenance lock until it is granted."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        async with lock() as acquired:
            if acquired:
                return
        assert time.monotonic() < deadline, "lease never expired"
        await asyncio.sleep(0.2)


# -- outages -------------------------------------------------------------------------------


async def test_unreachable_store_fails_fast_at_startup() -> None:
    with aws_environment():
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            await S3Store.create(
                endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
                bucket="nowhere",
                connect_timeout_seconds=1.0,
                max_attempts=2,
            )
        assert time.monotonic() - started < 5


@pytest.mark.slow
async def test_outage_raises_store_unavailable_and_the_store_recovers(tmp_path: Path) -> None:
    with aws_environment():
        server = Seaweed(tmp_path / "weed")
        await asyncio.to_thread(server.start)
        try:
            bucket = await asyncio.to_thread(server.create_bucket)
            store = await open_s3_store(server, bucket, max_attempts=1)  # no retry backoff
            try:
                await put(store, "kept", b"survives the outage")
                await asyncio.to_thread(server.stop)
                for operation in (
                    lambda: store.open("kept"),
                    lambda: store.list_dir(""),
                    lambda: store.info("kept"),
                    lambda: put(store, "new", b"n"),
                    lambda: store.delete("kept"),
                ):
                    started = time.monotonic()
                    with pytest.raises(StoreUnavailableError):
                        await operation()
                    assert time.monotonic() - started < 2
                await asyncio.to_thread(server.start)
                assert await read_all(store, "kept") == b"survives the outage"
                await put(store, "new", b"n")
                assert [e.name for e in await store.list_dir("")] == ["kept", "new"]
            finally:
                await store.close()
        finally:
            await asyncio.to_thread(server.close)


async def put_expiring(
    store: S3Store, path: str, data: bytes, expires_at: float | None
) -> tuple[ArtifactInfo, bool]:
    upload = await store.begin_upload(path, expires_at=expires_at)
    for i in range(0, len(data), MIN_PART_BYTES):
        await upload.write(data[i : i + MIN_PART_BYTES])
    info, _ = await upload.commit()
    return info, upload.kept_current


@pytest.mark.parametrize("size", [100, 2 * MIN_PART_BYTES + 1], ids=["put", "multipart"])
async def test_same_bytes_again_refresh_only_the_expiry(
    node_a: S3Store, node_b: S3Store, size: int
) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    soon, later = time.time() + 60, time.time() + 3600
    first, kept = await put_expiring(node_a, "cache/ac/k", data, soon)
    assert not kept
    again, kept = await put_expiring(node_b, "cache/ac/k", data, later)
    assert kept  # the bytes did not travel again: only the metadata was rewritten
    assert (again.etag, again.created_at) == (first.etag, first.created_at)
    assert again.version != first.version  # an eviction judged on the old one spares it
    assert not await node_a.evict(first)
    current = await node_a.info("cache/ac/k")
    assert current.expires_at == pytest.approx(later)
    assert (current.etag, current.version) == (first.etag, again.version)
    assert await read_all(node_a, "cache/ac/k") == data

    unchanged, kept = await put_expiring(node_a, "cache/ac/k", data, later)
    assert kept and unchanged.version == again.version  # same expiry: nothing written at all


async def test_same_bytes_of_another_content_type_are_a_new_version(node_a: S3Store) -> None:
    await put(node_a, "typed", b"{}")
    upload = await node_a.begin_upload("typed", content_type="application/x-other")
    await upload.write(b"{}")
    _, replaced = await upload.commit()
    assert replaced and not upload.kept_current
    assert (await node_a.info("typed")).content_type == "application/x-other"
