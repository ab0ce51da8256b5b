"""The upload-resource contract (artifactd/resumable/base.py), run on the filesystem, memory
and S3 (SeaweedFS) resource stores, each as `resources_for` picks it for its store.

"Another node" is a second resource store over the same storage: a second FilesystemStore
on the root (another process of --workers), a second S3Store on the bucket (another node);
the memory store has one process only, so it is the same object."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from artifactd.errors import (
    ConflictError,
    NotFoundError,
    StorageFullError,
    StoreUnavailableError,
    TooManyUploadsError,
)
from artifactd.resumable.base import Appending, UploadResource, UploadResources
from artifactd.resumable.factory import resources_for
from artifactd.resumable.memory import MemoryResources
from artifactd.resumable.s3 import S3Appending, S3Resources
from artifactd.store.base import Store
from artifactd.store.filesystem import FilesystemStore
from artifactd.store.memory import MemoryStore
from artifactd.store.s3 import MIN_PART_BYTES, S3Store
from tests.seaweed import (  # noqa: F401  (fixtures, used through getfixturevalue)
    Seaweed,
    aws_environment,
    open_s3_store,
    s3_bucket_fixture,
    seaweed_fixture,
)

PART = MIN_PART_BYTES
# Two full S3 parts and a tail: the bytes cross every kind of boundary.
DATA = os.urandom(2 * PART + 123_457)

Reopen = Callable[[], Awaitable[UploadResources]]


class Backend:
    """One store's resources, and a way to open the same storage again as another node."""

    def __init__(self, name: str, store: Store, reopen: Reopen) -> None:
        self.name = name
        self.store = store
        self.resources = resources_for(store)
        self.reopen = reopen


@pytest.fixture(params=["filesystem", "memory", "s3"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    opened: list[Store] = []

    async def open_store() -> Store:
        if request.param == "filesystem":
            store: Store = await FilesystemStore.create(tmp_path / "root")
        elif request.param == "s3":
            server: Seaweed = request.getfixturevalue("seaweed")
            bucket: str = request.getfixturevalue("s3_bucket")
            store = await open_s3_store(server, bucket, part_size_bytes=PART)
        else:
            store = opened[0] if opened else MemoryStore()
        opened.append(store)
        return store

    async def reopen() -> UploadResources:
        return resources_for(await open_store())

    yield Backend(request.param, await open_store(), reopen)
    for store in {id(s): s for s in opened}.values():
        await store.close()


async def create(resources: UploadResources, length: int | None = len(DATA)) -> UploadResource:
    return await resources.create(
        "big/a.bin",
        owner="ci",
        length=length,
        expires_at=time.time() + 3600,
        sha256=hashlib.sha256(DATA).hexdigest(),
        metadata="path YmlnL2EuYmlu",
        preconditions={"If-None-Match": "*"},
    )


async def append(appending: Appending, data: bytes, piece: int = 1 << 20) -> None:
    for start in range(0, len(data), piece):
        await appending.append(data[start : start + piece])


async def received(appending: Appending) -> bytes:
    return b"".join([chunk async for chunk in appending.chunks()])


async def test_a_new_resource_is_saved_whole(backend: Backend) -> None:
    resource = await create(backend.resources)
    loaded = await (await backend.reopen()).load(resource.id)
    assert loaded == resource
    assert loaded.offset == 0
    assert len(resource.id) == 32  # 192 random bits
    assert resource.id != (await create(backend.resources)).id


async def test_unknown_malformed_and_expired_ids_are_not_found(backend: Backend) -> None:
    for upload_id in ("A" * 32, "../etc/passwd", ""):
        with pytest.raises(NotFoundError):
            await backend.resources.load(upload_id)
        with pytest.raises(NotFoundError):
            async with backend.resources.appending(upload_id):
                pass
    expired = await backend.resources.create("x", owner=None, length=1, expires_at=time.time() - 1)
    with pytest.raises(NotFoundError):
        await backend.resources.load(expired.id)


async def test_checkpointed_bytes_come_back_in_order(backend: Backend) -> None:
    resource = await create(backend.resources)
    middle = PART + 1000
    async with backend.resources.appending(resource.id) as appending:
        await append(appending, DATA[:middle], piece=777_777)
        await appending.checkpoint()
    assert (await backend.resources.load(resource.id)).offset == middle
    # Resumed on another node, which finishes it.
    other = await backend.reopen()
    async with other.appending(resource.id) as appending:
        assert appending.resource.offset == middle
        await append(appending, DATA[middle:])
        await appending.checkpoint()
        assert await received(appending) == DATA
        # The completion may be tried again (a full disk, an unreachable store).
        assert await received(appending) == DATA
    async with backend.resources.appending(resource.id) as appending:
        assert await received(appending) == DATA


async def test_bytes_not_checkpointed_are_not_acknowledged(backend: Backend) -> None:
    """A holder that ends without a checkpoint (killed mid-PATCH) leaves the resource at
    its last checkpoint, though full S3 parts went out meanwhile; the next holder resumes
    from there and the bytes come out right."""
    resource = await create(backend.resources)
    async with backend.resources.appending(resource.id) as appending:
        await append(appending, DATA[:1000])
        await appending.checkpoint()
        await append(appending, b"\xff" * (PART + 5000))  # crosses a part boundary
    other = await backend.reopen()
    assert (await other.load(resource.id)).offset == 1000
    async with other.appending(resource.id) as appending:
        assert appending.resource.offset == 1000
        await append(appending, DATA[1000:])
        await appending.checkpoint()
        assert await received(appending) == DATA


async def test_rollback_drops_the_piece_since_the_checkpoint(backend: Backend) -> None:
    resource = await create(backend.resources)
    async with backend.resources.appending(resource.id) as appending:
        await append(appending, DATA[: PART - 10])
        await appending.checkpoint()
        await append(appending, b"\x00" * PART)  # a piece that failed its checksum
        await appending.rollback()
        assert appending.resource.offset == PART - 10
        await appending.checkpoint()
        await append(appending, DATA[PART - 10 :])
        await appending.checkpoint()
        assert await received(appending) == DATA


async def test_one_holder_at_a_time_across_nodes(backend: Backend) -> None:
    resource = await create(backend.resources)
    other = await backend.reopen()
    async with backend.resources.appending(resource.id) as appending:
        with pytest.raises(ConflictError):
            async with other.appending(resource.id):
                pass
        await append(appending, DATA[:10])
        await appending.checkpoint()
    async with other.appending(resource.id) as appending:
        assert appending.resource.offset == 10


async def test_load_while_appending_changes_nothing(backend: Backend) -> None:
    """A HEAD (load) between the pieces of a PATCH still being received sees the last
    checkpoint and leaves the bytes the holder has not checkpointed yet alone."""
    resource = await create(backend.resources)
    async with backend.resources.appending(resource.id) as appending:
        await append(appending, DATA[:100])
        await appending.checkpoint()
        await append(appending, DATA[100:5000])
        assert (await (await backend.reopen()).load(resource.id)).offset == 100
        await append(appending, DATA[5000:])
        await appending.checkpoint()
        assert await received(appending) == DATA


async def test_a_deferred_length_is_saved_at_the_checkpoint(backend: Backend) -> None:
    resource = await create(backend.resources, length=None)
    async with backend.resources.appending(resource.id) as appending:
        appending.resource.length = 10
        await append(appending, DATA[:10])
        await appending.checkpoint()
    loaded = await (await backend.reopen()).load(resource.id)
    assert (loaded.length, loaded.offset) == (10, 10)


async def test_an_empty_upload_has_no_bytes(backend: Backend) -> None:
    resource = await create(backend.resources, length=0)
    async with backend.resources.appending(resource.id) as appending:
        assert await received(appending) == b""


async def test_remove_leaves_nothing(backend: Backend) -> None:
    resource = await create(backend.resources)
    async with backend.resources.appending(resource.id) as appending:
        await append(appending, DATA[: PART + 10])
        await appending.checkpoint()
    await backend.resources.remove(resource.id)
    with pytest.raises(NotFoundError):
        await backend.resources.load(resource.id)
    await backend.resources.remove(resource.id)  # twice is fine
    assert await leftovers(backend) == []


async def test_a_removed_resource_is_not_brought_back_by_its_holder(backend: Backend) -> None:
    resource = await create(backend.resources)
    async with backend.resources.appending(resource.id) as appending:
        await append(appending, DATA[:10])
        await (await backend.reopen()).remove(resource.id)  # DELETE on another node
        with pytest.raises(NotFoundError):
            await append(appending, DATA[10 : PART + 10])  # S3: the part has nowhere to go
            await appending.checkpoint()
        with pytest.raises(NotFoundError):
            await received(appending)  # a completion meanwhile commits nothing
    with pytest.raises(NotFoundError):
        await backend.resources.load(resource.id)


async def test_a_completed_upload_keeps_its_record_without_its_bytes(backend: Backend) -> None:
    resource = await create(backend.resources)
    async with backend.resources.appending(resource.id) as appending:
        await append(appending, DATA)
        await appending.checkpoint()
        assert await received(appending) == DATA
        await appending.mark_complete()
    loaded = await (await backend.reopen()).load(resource.id)
    assert (loaded.complete, loaded.offset) == (True, len(DATA))
    assert len(await leftovers(backend)) == 1  # the state alone
    assert await backend.resources.remove_expired(now=resource.expires_at + 1) == 1
    assert await leftovers(backend) == []


async def test_remove_expired_removes_the_expired_only(backend: Backend) -> None:
    old = await create(backend.resources)
    async with backend.resources.appending(old.id) as appending:
        await append(appending, DATA[: PART + 10])
        await appending.checkpoint()
    live = await create(backend.resources)
    assert await backend.resources.remove_expired(now=time.time() + 1800) == 0
    # Judged soon after the expiry: not yet a crash's leftover by age, removed as expired.
    with_expiry = await backend.resources.create(
        "x", owner=None, length=len(DATA), expires_at=time.time() + 1
    )
    async with backend.resources.appending(with_expiry.id) as appending:
        await append(appending, DATA[: PART + 10])
        await appending.checkpoint()
    await asyncio.sleep(1.1)
    assert await backend.resources.remove_expired() == 1
    assert [name for name in await leftovers(backend) if with_expiry.id in name] == []
    assert await backend.resources.remove_expired(now=old.expires_at + 1) == 2
    assert await leftovers(backend) == []
    assert await backend.resources.remove_expired() == 0
    with pytest.raises(NotFoundError):
        await backend.resources.load(live.id)


async def leftovers(backend: Backend) -> list[str]:
    """What remains of upload resources in the storage."""
    store = backend.store
    if isinstance(store, FilesystemStore):
        uploads = store.state_dir / "uploads"
        return sorted(p.name for p in uploads.iterdir()) if uploads.is_dir() else []
    if isinstance(store, S3Store):
        prefix = store.layout.uploads_prefix
        keys = [
            item["Key"]
            async for page in store.bucket.list_pages(prefix)
            for item in page.get("Contents", [])
        ]
        pending = await store.bucket.request("list_multipart_uploads", Prefix=prefix)
        return keys + [u["Key"] for u in pending.get("Uploads", [])]
    assert isinstance(backend.resources, MemoryResources)
    return sorted(backend.resources.ids())


async def test_the_stale_multipart_cleanup_leaves_upload_resources_alone(
    seaweed: Seaweed, s3_bucket: str
) -> None:
    """A resource may live longer than the day after which the S3 store aborts a dead
    writer's multipart uploads: its bytes are the resource store's to remove."""
    store = await open_s3_store(
        seaweed, s3_bucket, part_size_bytes=PART, stale_upload_age_seconds=0
    )
    try:
        resources = resources_for(store)
        resource = await create(resources)
        async with resources.appending(resource.id) as appending:
            await append(appending, DATA[: PART + 10])
            await appending.checkpoint()
        await store.collect_garbage()
        async with resources.appending(resource.id) as appending:
            await append(appending, DATA[PART + 10 :])
            await appending.checkpoint()
            assert await received(appending) == DATA
    finally:
        await store.close()


async def test_the_append_lock_of_a_dead_node_is_taken_over(
    seaweed: Seaweed, s3_bucket: str
) -> None:
    """A node killed mid-PATCH leaves its lock object behind, no longer renewed: another
    node waits until it is older than the lock's lifetime, then takes it over."""
    store = await open_s3_store(seaweed, s3_bucket, part_size_bytes=PART)
    try:
        resources = S3Resources(
            store.bucket, store.layout.uploads_prefix, PART, "node-b", lock_seconds=2.0
        )
        resource = await create(resources)
        lock_key = resources.key(resource.id, "lock")
        await store.bucket.put_json(lock_key, {"owner": "dead-node", "written_ns": 0})
        with pytest.raises(ConflictError):
            async with resources.appending(resource.id):
                pass
        await asyncio.sleep(2.5)
        async with resources.appending(resource.id) as appending:
            await append(appending, DATA[:10])
            await appending.checkpoint()
        assert (await resources.load(resource.id)).offset == 10
        assert await store.bucket.get_json(lock_key) is None  # released
    finally:
        await store.close()


async def test_a_completion_cut_short_after_assembling_is_tried_again(
    seaweed: Seaweed, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The multipart upload was completed, but the node died before saving so: the next
    holder finds the assembled object and reads it."""
    store = await open_s3_store(seaweed, s3_bucket, part_size_bytes=PART)
    try:
        resources = resources_for(store)
        resource = await create(resources)
        save = S3Appending._save

        async def dies_when_assembled(self: S3Appending, **changes: Any) -> None:
            if changes.get("assembled"):
                raise StoreUnavailableError("the node died")
            await save(self, **changes)

        async with resources.appending(resource.id) as appending:
            await append(appending, DATA)
            await appending.checkpoint()
            monkeypatch.setattr(S3Appending, "_save", dies_when_assembled)
            with pytest.raises(StoreUnavailableError):
                await received(appending)
        monkeypatch.setattr(S3Appending, "_save", save)
        async with resources.appending(resource.id) as appending:
            assert await received(appending) == DATA
    finally:
        await store.close()


async def test_a_tail_removed_under_the_state_is_not_found(
    seaweed: Seaweed, s3_bucket: str
) -> None:
    """The state names a tail a removal deleted since it was read: 404, not an S3 error."""
    store = await open_s3_store(seaweed, s3_bucket, part_size_bytes=PART)
    try:
        resources = resources_for(store)
        resource = await create(resources)
        async with resources.appending(resource.id) as appending:
            await append(appending, DATA[:10])
            await appending.checkpoint()
        async for page in store.bucket.list_pages(store.layout.uploads_prefix):
            for item in page.get("Contents", []):
                if ".tail-" in item["Key"]:
                    await store.bucket.delete_quietly(item["Key"])
        with pytest.raises(NotFoundError):
            async with resources.appending(resource.id):
                pass
    finally:
        await store.close()


async def test_a_short_write_on_a_full_disk_counts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A nearly full disk takes part of a chunk, then refuses the rest: 507's error, and the
    offset still counts only whole chunks, so the upload resumes with the right bytes."""
    store = await FilesystemStore.create(tmp_path / "root")
    try:
        resources = resources_for(store)
        resource = await create(resources)
        pwrite = os.pwrite

        def nearly_full(fd: int, data: Any, offset: int) -> int:
            if len(data) > 4:
                return pwrite(fd, bytes(data[:4]), offset)
            raise OSError(errno.ENOSPC, "No space left on device")

        async with resources.appending(resource.id) as appending:
            await append(appending, DATA[:10])
            monkeypatch.setattr(os, "pwrite", nearly_full)
            with pytest.raises(StorageFullError):
                await appending.append(DATA[10:20])
            monkeypatch.setattr(os, "pwrite", pwrite)
            assert appending.resource.offset == 10
            await appending.checkpoint()
        async with resources.appending(resource.id) as appending:
            await append(appending, DATA[10:])
            await appending.checkpoint()
            assert await received(appending) == DATA
    finally:
        await store.close()


async def until_the_lock_is_free(resources: UploadResources, upload_id: str) -> None:
    """Wait for the append lock a failed release left behind to expire (`lock_seconds`),
    taking and releasing it once it has: no fixed sleep past its expiry."""
    deadline = time.monotonic() + 30
    while True:
        try:
            async with resources.appending(upload_id):
                return
        except ConflictError:  # still held by the lock object left in the bucket
            assert time.monotonic() < deadline, "the append lock never expired"
            await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_an_outage_mid_append_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """The store goes away while a PATCH is appending: 503's error, and once it is back
    the upload resumes from its last checkpoint with the right bytes."""
    with aws_environment():
        server = Seaweed(tmp_path / "weed")
        await asyncio.to_thread(server.start)
        try:
            bucket = await asyncio.to_thread(server.create_bucket)
            store = await open_s3_store(server, bucket, part_size_bytes=PART, max_attempts=1)
            try:
                resources = S3Resources(
                    store.bucket, store.layout.uploads_prefix, PART, "node", lock_seconds=2.0
                )
                resource = await create(resources)
                with pytest.raises(StoreUnavailableError):
                    async with resources.appending(resource.id) as appending:
                        await append(appending, DATA[: PART + 10])
                        await appending.checkpoint()
                        await asyncio.to_thread(server.stop)
                        try:
                            await append(appending, DATA[PART + 10 :])
                        finally:
                            with pytest.raises(StoreUnavailableError):
                                await appending.checkpoint()
                await asyncio.to_thread(server.start)
                assert (await resources.load(resource.id)).offset == PART + 10
                await until_the_lock_is_free(resources, resource.id)  # its release failed
                async with resources.appending(resource.id) as appending:
                    await append(appending, DATA[PART + 10 :])
                    await appending.checkpoint()
                    assert await received(appending) == DATA
            finally:
                await store.close()
        finally:
            await asyncio.to_thread(server.close)


async def test_open_uploads_are_capped_per_owner(backend: Backend) -> None:
    resources = backend.resources

    async def make(owner: str | None, store: UploadResources = resources) -> UploadResource:
        return await store.create(
            "c", owner=owner, length=4, expires_at=time.time() + 3600, open_cap=2
        )

    # Concurrent creations of one owner cannot both take the last place.
    made = await asyncio.gather(*(make("ci") for _ in range(5)), return_exceptions=True)
    assert sum(isinstance(m, UploadResource) for m in made) == 2
    assert all(isinstance(m, UploadResource | TooManyUploadsError) for m in made)
    first, second = (m for m in made if isinstance(m, UploadResource))
    await make("other")  # other owners have their own places, anonymous clients one
    await make(None)
    with pytest.raises(TooManyUploadsError):
        await make("ci", await backend.reopen())  # another process or node counts alike
    await resources.remove(first.id)  # a removed upload gives its place back
    await make("ci")
    with pytest.raises(TooManyUploadsError):
        await make("ci")
    async with resources.appending(second.id) as appending:
        await appending.append(b"done")
        await appending.checkpoint()
        await appending.mark_complete()  # so does a completed one
    await make("ci")
    expired = await resources.create("c", owner="late", length=4, expires_at=time.time() - 5)
    assert expired.owner == "late"
    assert await resources.open_count("late") == 0  # and an expired one
    assert await resources.open_count("ci") == 2
