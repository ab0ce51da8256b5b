"""One contract suite, run against every storage backend."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from artifactd.errors import (
    ConflictError,
    DigestMismatchError,
    IsDirectoryError,
    NotDirectoryError,
    NotFoundError,
)
from artifactd.store.base import ArtifactInfo, Store, listing_key
from artifactd.store.filesystem import FilesystemStore
from artifactd.store.memory import MemoryStore
from tests.seaweed import (  # noqa: F401  (fixtures, used through getfixturevalue)
    Seaweed,
    open_s3_store,
    s3_versioned_bucket_fixture,
    seaweed_fixture,
)
from tests.store.assertions import assert_nothing_at


@pytest.fixture(params=["filesystem", "memory", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "filesystem":
        backend: Store = await FilesystemStore.create(tmp_path / "root")
    elif request.param == "s3":
        # A versioned bucket: readers then keep their version through overwrites and
        # deletes (on unversioned buckets only while the local cache holds it).
        server: Seaweed = request.getfixturevalue("seaweed")
        bucket: str = request.getfixturevalue("s3_versioned_bucket")
        backend = await open_s3_store(server, bucket, cache_dir=tmp_path / "cache")
    else:
        backend = MemoryStore()
    yield backend
    await backend.close()


async def put(
    store: Store, path: str, data: bytes, *, expires_at: float | None = None
) -> tuple[ArtifactInfo, bool]:
    upload = await store.begin_upload(path, expires_at=expires_at)
    for i in range(0, len(data), 7):
        await upload.write(data[i : i + 7])
    return await upload.commit()


async def read_all(store: Store, path: str) -> bytes:
    async with await store.open(path) as reader:
        return await reader.read(0, reader.info.size + 10)


async def test_committed_upload_is_readable_with_its_digest(store: Store) -> None:
    data = b"hello artifact world"
    info, replaced = await put(store, "proj/1/a.txt", data)
    assert not replaced
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.content_type == "text/plain"
    assert await read_all(store, "proj/1/a.txt") == data
    assert (await store.info("proj/1/a.txt")).etag == info.etag


async def test_ranged_reads_return_the_requested_slice(store: Store) -> None:
    data = bytes(range(256)) * 10
    await put(store, "bin", data)
    async with await store.open("bin") as reader:
        assert await reader.read(100, 50) == data[100:150]
        assert await reader.read(len(data) - 3, 10) == data[-3:]
        assert await reader.read(len(data), 10) == b""


async def test_second_commit_replaces_and_changes_etag(store: Store) -> None:
    first, _ = await put(store, "x.bin", b"one")
    second, replaced = await put(store, "x.bin", b"two!")
    assert replaced
    assert first.etag != second.etag
    assert await read_all(store, "x.bin") == b"two!"


async def test_recommitting_the_same_bytes_keeps_the_etag_and_restarts_the_expiry(
    store: Store,
) -> None:
    soon, later = time.time() + 60, time.time() + 3600
    first, _ = await put(store, "cache/blob", b"same bytes", expires_at=soon)
    upload = await store.begin_upload("cache/blob", expires_at=later)
    await upload.write(b"same bytes")
    second, replaced = await upload.commit(hashlib.sha256(b"same bytes").hexdigest())
    assert replaced
    assert second.etag == first.etag
    assert second.expires_at == pytest.approx(later)
    assert (await store.info("cache/blob")).expires_at == pytest.approx(later)
    assert await read_all(store, "cache/blob") == b"same bytes"
    assert upload.kept_current  # no new bytes were written: the same version, expiry renewed
    assert second.created_at == first.created_at
    await upload.abort()  # safe after commit
    assert [info.path async for info in store.iter_artifacts("cache/")] == ["cache/blob"]


async def test_recommitting_the_same_bytes_is_still_judged_by_require(store: Store) -> None:
    await put(store, "once", b"data")
    upload = await store.begin_upload("once")
    await upload.write(b"data")

    def refuse(current: ArtifactInfo | None) -> None:
        raise ConflictError("exists")

    with pytest.raises(ConflictError):
        await upload.commit(require=refuse)


@pytest.mark.parametrize("backend", ["filesystem", "memory"])
async def test_local_backends_keep_the_current_version_for_the_same_bytes(
    backend: str, tmp_path: Path
) -> None:
    store: Store = (
        await FilesystemStore.create(tmp_path) if backend == "filesystem" else MemoryStore()
    )
    try:
        first, _ = await put(store, "c/a.txt", b"x" * 100)
        upload = await store.begin_upload("c/a.txt", expires_at=time.time() + 60)
        await upload.write(b"x" * 100)
        second, _ = await upload.commit()
        assert upload.kept_current
        assert second.version == first.version
        other = await store.begin_upload("c/a.txt", content_type="application/x-other")
        await other.write(b"x" * 100)
        await other.commit()
        assert not other.kept_current  # another content type is another version
        if backend == "filesystem":  # the unused temp file is gone
            assert list((tmp_path / ".artifactd" / "tmp").iterdir()) == []
    finally:
        await store.close()


async def test_open_reader_keeps_its_version_after_replace_and_delete(store: Store) -> None:
    await put(store, "v", b"A" * 1000)
    reader = await store.open("v")
    await put(store, "v", b"B" * 2000)
    assert await reader.read(0, 5000) == b"A" * 1000
    await store.delete("v")
    assert await reader.read(990, 100) == b"A" * 10
    await reader.aclose()


async def test_digest_mismatch_stores_nothing_and_keeps_previous(store: Store) -> None:
    await put(store, "k", b"old")
    upload = await store.begin_upload("k")
    await upload.write(b"new")
    with pytest.raises(DigestMismatchError):
        await upload.commit(hashlib.sha256(b"other").hexdigest())
    assert await read_all(store, "k") == b"old"


async def test_aborted_upload_stores_nothing(store: Store) -> None:
    upload = await store.begin_upload("never/there")
    await upload.write(b"partial")
    await upload.abort()
    with pytest.raises(NotFoundError):
        await store.open("never/there")
    await assert_nothing_at(store, "never")


async def test_missing_artifact_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.open("nope")
    with pytest.raises(NotFoundError):
        await store.delete("nope")
    await assert_nothing_at(store, "nope")


async def test_directory_is_not_a_file(store: Store) -> None:
    await put(store, "d/e/f", b"x")
    with pytest.raises(IsDirectoryError):
        await store.open("d/e")
    assert [e.name for e in await store.list_dir("d")] == ["e"]
    assert (await store.info("d/e/f")).size == 1
    with pytest.raises(NotDirectoryError):
        await store.list_dir("d/e/f")
    with pytest.raises(NotFoundError):
        await store.list_dir("absent")


async def test_upload_onto_a_directory_is_refused_leaving_the_directory(store: Store) -> None:
    # A backend may refuse in begin_upload or only at the commit (base.py).
    await put(store, "d/e/f", b"x")
    with pytest.raises(IsDirectoryError):
        await put(store, "d/e", b"onto a directory")
    assert await read_all(store, "d/e/f") == b"x"
    with pytest.raises(IsDirectoryError):
        await store.info("d/e")


async def test_current_is_info_or_none(store: Store) -> None:
    await put(store, "cur/a", b"a")
    assert await store.current("cur/a") == await store.info("cur/a")
    assert await store.current("cur/absent") is None
    await put(store, "cur/old", b"x", expires_at=time.time() - 1)
    assert await store.current("cur/old") is None
    # A backend may tell a directory apart, or leave that to the commit.
    with contextlib.suppress(IsDirectoryError):
        assert await store.current("cur") is None


async def test_open_file_answers_a_directory_as_a_miss(store: Store) -> None:
    info, _ = await put(store, "of/a/b", b"b")
    async with await store.open_file("of/a/b") as reader:
        assert (reader.info.etag, await reader.read(0, 10)) == (info.etag, b"b")
    assert (await store.file_info("of/a/b")).etag == info.etag
    await put(store, "of/old", b"x", expires_at=time.time() - 1)
    for path in ("of/a", "of", "of/absent", "of/old", ""):
        with pytest.raises(NotFoundError):
            await store.open_file(path)
        with pytest.raises(NotFoundError):
            await store.file_info(path)


async def test_upload_under_a_file_conflicts(store: Store) -> None:
    await put(store, "f", b"x")
    upload = await store.begin_upload("f/child")
    await upload.write(b"y")
    with pytest.raises(ConflictError):
        await upload.commit()


async def test_listing_shows_dirs_first_then_files(store: Store) -> None:
    await put(store, "p/b.txt", b"bb")
    await put(store, "p/a.txt", b"a")
    await put(store, "p/sub/c", b"c")
    entries = await store.list_dir("p")
    assert [(e.name, e.type) for e in entries] == [
        ("sub", "dir"),
        ("a.txt", "file"),
        ("b.txt", "file"),
    ]
    assert entries[1].size == 1
    assert entries[1].sha256 == hashlib.sha256(b"a").hexdigest()
    root = await store.list_dir("")
    assert [e.name for e in root] == ["p"]


async def test_expired_artifact_is_gone_for_readers(store: Store) -> None:
    await put(store, "old", b"x", expires_at=time.time() - 1)
    await put(store, "fresh", b"y", expires_at=time.time() + 3600)
    with pytest.raises(NotFoundError):
        await store.open("old")
    assert [e.name for e in await store.list_dir("")] == ["fresh"]
    assert [i.path async for i in store.iter_artifacts()] == ["fresh"]


async def test_iter_artifacts_filters_by_prefix_in_path_order(store: Store) -> None:
    for path in ["b/2", "a/1", "b/1", "c"]:
        await put(store, path, path.encode())
    assert [i.path async for i in store.iter_artifacts("b/")] == ["b/1", "b/2"]
    assert [i.path async for i in store.iter_artifacts()] == ["a/1", "b/1", "b/2", "c"]


async def test_delete_removes_the_artifact(store: Store) -> None:
    await put(store, "gone/x", b"x")
    deleted = await store.delete("gone/x")
    assert deleted.path == "gone/x"
    with pytest.raises(NotFoundError):
        await store.open("gone/x")


async def read_now_or_none(store: Store, path: str) -> bytes | None:
    """What `open_now` gives for `path`: the bytes of a reader, or None for "use open"."""
    reader = store.open_now(path)
    if reader is None:
        return None
    async with reader:
        return await reader.read(0, reader.info.size + 10)


def gives_nothing_now(store: Store, path: str) -> bool:
    """open_now's answers for a path with nothing to serve: "use open" (None), or the miss
    proven at once (NotFoundError)."""
    try:
        return store.open_now(path) is None
    except NotFoundError:
        return True


async def test_open_now_never_answers_other_than_open(store: Store) -> None:
    # A backend may always say "use open" (None); what it does return must be the version
    # `open` would give, never one replaced, deleted or expired.
    assert gives_nothing_now(store, "nothing/here")
    await put(store, "now/a", b"first")
    await read_all(store, "now/a")  # warm whatever a backend keeps
    assert await read_now_or_none(store, "now/a") in (None, b"first")
    await put(store, "now/a", b"second!")
    assert await read_now_or_none(store, "now/a") in (None, b"second!")
    await read_all(store, "now/a")
    assert await read_now_or_none(store, "now/a") in (None, b"second!")
    await store.delete("now/a")
    assert gives_nothing_now(store, "now/a")
    await put(store, "now/old", b"x", expires_at=time.time() - 1)
    assert gives_nothing_now(store, "now/old")
    await put(store, "now/d/f", b"y")
    await read_all(store, "now/d/f")
    assert store.open_now("now/d") is None  # a directory: never a miss


async def test_make_dir_makes_an_empty_listable_directory(store: Store) -> None:
    assert await store.make_dir("made")
    assert await store.list_dir("made") == []
    assert [(e.name, e.type) for e in await store.list_dir("")] == [("made", "dir")]
    with pytest.raises(IsDirectoryError):
        await store.info("made")
    assert await store.make_dir("made/inner")
    assert [e.name for e in await store.list_dir("made")] == ["inner"]
    await put(store, "made/inner/a.txt", b"a")
    assert await read_all(store, "made/inner/a.txt") == b"a"


async def test_make_dir_refuses_what_exists_and_a_missing_or_file_parent(store: Store) -> None:
    await put(store, "d/f.txt", b"x")
    assert not await store.make_dir("d")
    assert not await store.make_dir("d/f.txt")
    assert not await store.make_dir("")
    with pytest.raises(NotFoundError):
        await store.make_dir("missing/child")
    with pytest.raises(NotDirectoryError):
        await store.make_dir("d/f.txt/child")
    assert (await store.info("d/f.txt")).size == 1
    with pytest.raises(NotFoundError):
        await store.list_dir("missing")


async def test_remove_dir_removes_empty_directories_only(store: Store) -> None:
    assert await store.make_dir("tree")
    assert await store.make_dir("tree/empty")
    await put(store, "tree/full/a.txt", b"a")
    assert not await store.remove_dir("tree")
    assert not await store.remove_dir("tree/full/a.txt")
    assert not await store.remove_dir("")
    assert [e.name for e in await store.list_dir("tree")] == ["empty", "full"]
    await store.delete("tree/full/a.txt")
    assert await store.remove_dir("tree")
    with pytest.raises(NotFoundError):
        await store.list_dir("tree")
    assert await store.remove_dir("tree")  # nothing there: nothing left to remove


async def test_evict_batch_removes_exactly_the_versions_given(store: Store) -> None:
    infos = [(await put(store, f"batch/{name}", name.encode()))[0] for name in "abcd"]
    await put(store, "batch/b", b"a newer b")  # replaced meanwhile: spared
    await store.delete("batch/c")  # gone meanwhile: nothing to do
    assert await store.evict_batch(infos) == [True, False, False, True]
    assert [info.path async for info in store.iter_artifacts("batch/")] == ["batch/b"]
    assert await read_all(store, "batch/b") == b"a newer b"
    assert await store.evict_batch([]) == []


@pytest.mark.parametrize("limit", [1, 2, 3, 10])
async def test_pages_of_a_listing_are_the_listing(store: Store, limit: int) -> None:
    for name in ["p/b", "p/a", "p/d2/x", "p/d1/y", "p/c"]:
        await put(store, name, b"x")
    await put(store, "p/gone", b"x", expires_at=time.time() - 1)
    seen: list[str] = []
    after = None
    while True:
        page, more = await store.list_dir_page("p", after, limit)
        assert len(page) <= limit
        seen += [e.name for e in page]
        if not more:
            break
        after = listing_key(page[-1])
    assert seen == [e.name for e in await store.list_dir("p")] == ["d1", "d2", "a", "b", "c"]
    assert await store.list_dir_page("p", "f/c", limit) == ([], False)
    assert [e.name for e in (await store.list_dir_page("p", "d/d2", 1))[0]] == ["a"]


async def test_iter_artifacts_continues_after_a_path(store: Store) -> None:
    for name in ["a/1", "a/2", "a/3", "b/1"]:
        await put(store, name, b"x")
    assert [i.path async for i in store.iter_artifacts("a/", after="a/1")] == ["a/2", "a/3"]
    assert [i.path async for i in store.iter_artifacts(after="a/3")] == ["b/1"]
    assert [i.path async for i in store.iter_artifacts("a/", after="a")] == ["a/1", "a/2", "a/3"]
    assert [i.path async for i in store.iter_artifacts("a/", after="b")] == []
