"""Group commit in the filesystem backend: uploads and deletes that arrive while a batch is
being made durable go together as the next batch, each judged in arrival order, each failing
alone."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from artifactd.errors import (
    ConflictError,
    IsDirectoryError,
    NotFoundError,
    PreconditionFailedError,
    StorageFullError,
)
from artifactd.store.base import ArtifactInfo, Upload
from artifactd.store.filesystem import FilesystemStore, groupcommit
from artifactd.store.filesystem import upload as upload_module
from artifactd.store.filesystem.commits import Answer, Write
from artifactd.store.filesystem.groupcommit import GroupCommit
from artifactd.store.filesystem.hops import in_thread
from artifactd.store.filesystem.metadb import VersionRow
from artifactd.store.filesystem.upload import UPLOAD_BATCH_BYTES, FileUpload

pytestmark = pytest.mark.allow_blocking


class HeldBatches:
    """Holds the store's batches at a gate: what is submitted meanwhile queues up and goes
    as one batch when the gate opens."""

    def __init__(self, store: FilesystemStore) -> None:
        self.gate = threading.Event()
        self.sizes: list[int] = []
        run = store._write_batch_sync

        def held(items: Sequence[Write]) -> Callable[[], list[Answer]]:
            self.sizes.append(len(items))
            self.gate.wait(10)
            return run(items)

        store.commits = GroupCommit(held)


async def queued(store: FilesystemStore, count: int) -> None:
    """Until `count` writes wait behind the running batch (each upload's own flush first)."""
    for _ in range(1000):
        if len(store.commits._queue) >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{len(store.commits._queue)} writes queued, expected {count}")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FilesystemStore]:
    opened = await FilesystemStore.create(tmp_path / "root")
    yield opened
    await opened.close()


async def written(store: FilesystemStore, path: str, data: bytes, **kwargs: object) -> Upload:
    upload = await store.begin_upload(path, **kwargs)  # type: ignore[arg-type]
    await upload.write(data)
    return upload


def if_none_match_star(current: ArtifactInfo | None) -> None:
    if current is not None:
        raise PreconditionFailedError("the stored version does not match the conditions")


def refuse(current: ArtifactInfo | None) -> None:
    raise ConflictError("refused")


async def in_one_batch(
    store: FilesystemStore, writes: list[Callable[[], Awaitable[object]]]
) -> list[object]:
    """Run `writes` so that they all land in one batch (behind a held first one)."""
    held = HeldBatches(store)
    first = await written(store, "first.bin", b"first")
    blocker = asyncio.ensure_future(first.commit())
    await asyncio.sleep(0.05)
    tasks = []
    for write in writes:  # queued in this order: arrival order
        tasks.append(asyncio.ensure_future(write()))
        await queued(store, len(tasks))
    held.gate.set()
    await blocker
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert held.sizes == [1, len(writes)]
    return outcomes


def temp_files(store: FilesystemStore) -> list[str]:
    return os.listdir(store.tmp_dir)


async def read(store: FilesystemStore, path: str) -> bytes:
    async with await store.open(path) as reader:
        return await reader.read(0, reader.info.size)


async def test_concurrent_uploads_share_a_batch_and_are_all_stored(
    store: FilesystemStore,
) -> None:
    contents = {f"cas/{i % 4}/{i}.bin": os.urandom(1000 + i) for i in range(20)}
    uploads = [await written(store, path, data) for path, data in contents.items()]
    outcomes = await in_one_batch(store, [upload.commit for upload in uploads])
    for (path, data), outcome in zip(contents.items(), outcomes, strict=True):
        assert isinstance(outcome, tuple)
        info, replaced = outcome
        assert (info.path, info.size, replaced) == (path, len(data), False)
        assert await read(store, path) == data
    assert temp_files(store) == []


async def test_two_if_none_match_star_puts_in_one_batch_one_wins_the_other_is_412(
    store: FilesystemStore,
) -> None:
    one = await written(store, "same.bin", b"one")
    two = await written(store, "same.bin", b"two")
    first, second = await in_one_batch(
        store,
        [
            lambda: one.commit(require=if_none_match_star),
            lambda: two.commit(require=if_none_match_star),
        ],
    )
    assert isinstance(first, tuple) and first[1] is False
    assert isinstance(second, PreconditionFailedError)
    assert await read(store, "same.bin") == b"one"
    assert temp_files(store) == []


async def test_one_failing_write_fails_alone(store: FilesystemStore) -> None:
    (store.root / "blocker").write_bytes(b"a file where a directory is needed")
    good = await written(store, "a/good.bin", b"good")
    refused = await written(store, "a/refused.bin", b"refused")
    under_a_file = await written(store, "blocker/x.bin", b"x")
    also_good = await written(store, "a/also-good.bin", b"also good")
    outcomes = await in_one_batch(
        store,
        [
            good.commit,
            lambda: refused.commit(require=refuse),
            under_a_file.commit,
            also_good.commit,
            lambda: store.delete("absent.bin"),
        ],
    )
    assert isinstance(outcomes[0], tuple) and isinstance(outcomes[3], tuple)
    assert isinstance(outcomes[1], ConflictError) and str(outcomes[1]) == "refused"
    assert isinstance(outcomes[2], ConflictError) and "is a file" in str(outcomes[2])
    assert isinstance(outcomes[4], NotFoundError)
    assert await read(store, "a/good.bin") == b"good"
    assert await read(store, "a/also-good.bin") == b"also good"
    with pytest.raises(NotFoundError):
        await store.info("a/refused.bin")
    assert temp_files(store) == []


async def test_writes_of_one_path_in_one_batch_apply_in_arrival_order(
    store: FilesystemStore,
) -> None:
    one = await written(store, "p.bin", b"one")
    two = await written(store, "p.bin", b"two")
    put_one, delete, delete_again, put_two = await in_one_batch(
        store,
        [one.commit, lambda: store.delete("p.bin"), lambda: store.delete("p.bin"), two.commit],
    )
    assert isinstance(put_one, tuple) and put_one[1] is False
    assert isinstance(delete, ArtifactInfo) and delete.size == 3  # what put_one made
    assert isinstance(delete_again, NotFoundError)
    assert isinstance(put_two, tuple) and put_two[1] is False  # nothing there before it
    assert await read(store, "p.bin") == b"two"
    rows = [row for row in store.db.iter_all() if row.path == "p.bin"]
    assert [row.sha256 for row in rows] == [put_two[0].sha256]  # no row left of the others


async def test_a_full_metadata_database_fails_only_the_write_it_cannot_take(
    store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = store.db.record_versions

    def record_unless_full(rows: Sequence[VersionRow]) -> None:
        if any(row.path == "full.bin" for row in rows):
            raise StorageFullError("no space left for the metadata database")
        record(rows)

    monkeypatch.setattr(store.db, "record_versions", record_unless_full)
    fits = await written(store, "fits.bin", b"fits")
    full = await written(store, "full.bin", b"full")
    fits_too = await written(store, "fits-too.bin", b"fits too")
    outcomes = await in_one_batch(store, [fits.commit, full.commit, fits_too.commit])
    assert isinstance(outcomes[0], tuple) and isinstance(outcomes[2], tuple)
    assert isinstance(outcomes[1], StorageFullError)
    assert not (store.root / "full.bin").exists()
    assert await read(store, "fits-too.bin") == b"fits too"
    assert temp_files(store) == []


async def test_rows_are_durable_before_any_file_is_renamed_into_place(
    store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a crash at any moment relies on: a version never shows without its row. Each
    rename finds its row committed (another connection sees it), and the batch's directory
    is flushed once, after the renames."""
    db_path = store.state_dir / "metadata.db"
    real_rename, real_fsync = os.rename, os.fsync
    events: list[str] = []

    def rename(src: str | Path, dst: str | Path) -> None:
        if str(src).startswith(str(store.tmp_dir)):
            relative = os.path.relpath(dst, store.root)
            with sqlite3.connect(db_path) as other:
                found = other.execute(
                    "SELECT count(*) FROM versions WHERE path = ? AND origin = 'upload'",
                    (relative,),
                ).fetchone()[0]
            other.close()
            events.append(f"rename {relative} row={found}")
        real_rename(src, dst)

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if target == str(store.root / "dir"):
            events.append("fsync dir")
        real_fsync(fd)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "fsync", fsync)
    uploads = [await written(store, f"dir/{i}.bin", b"%d" % i) for i in range(3)]
    await in_one_batch(store, [upload.commit for upload in uploads])
    renames = [f"rename dir/{i}.bin row=1" for i in range(3)]
    assert events == ["rename first.bin row=1", *renames, "fsync dir"]


async def test_identical_bytes_keep_the_current_version_inside_a_batch(
    store: FilesystemStore,
) -> None:
    first = await written(store, "same.bin", b"same bytes")
    info, _ = await first.commit()
    again = await written(store, "same.bin", b"same bytes", expires_at=4_000_000_000.0)
    other = await written(store, "other.bin", b"other")
    kept, stored = await in_one_batch(store, [again.commit, other.commit])
    assert isinstance(kept, tuple) and isinstance(stored, tuple)
    assert again.kept_current and not other.kept_current
    assert (kept[0].version, kept[0].expires_at) == (info.version, 4_000_000_000.0)
    assert (await store.info("same.bin")).expires_at == 4_000_000_000.0
    assert temp_files(store) == []


async def test_a_commit_cancelled_while_queued_stores_nothing(store: FilesystemStore) -> None:
    held = HeldBatches(store)
    first = await written(store, "first.bin", b"first")
    blocker = asyncio.ensure_future(first.commit())
    await asyncio.sleep(0.05)
    late = await written(store, "late.bin", b"late")
    task = asyncio.ensure_future(late.commit())
    await queued(store, 1)
    task.cancel()  # before its batch starts
    with pytest.raises(asyncio.CancelledError):
        await task
    held.gate.set()
    await blocker
    assert held.sizes == [1]
    with pytest.raises(NotFoundError):
        await store.info("late.bin")
    assert temp_files(store) == []


async def test_a_commit_cancelled_once_its_batch_runs_is_still_whole(
    store: FilesystemStore,
) -> None:
    held = HeldBatches(store)
    upload = await written(store, "going.bin", b"going")
    task = asyncio.ensure_future(upload.commit())
    for _ in range(200):
        if held.sizes:
            break
        await asyncio.sleep(0.005)
    task.cancel()  # its batch is running: the commit goes through, the waiter gives up
    await asyncio.sleep(0.05)
    assert not task.done()
    held.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await read(store, "going.bin") == b"going"
    assert temp_files(store) == []


async def test_rows_of_a_batch_cut_short_by_a_crash_go_with_its_temp_files(
    store: FilesystemStore,
) -> None:
    """A crash after a batch's metadata transaction and before its renames leaves rows of
    versions never published; cleaning up the dead writer's temp files removes them, so
    `verify` does not report them missing (or, replacing a version, corrupt)."""
    kept = await written(store, "kept.bin", b"kept")
    await kept.commit()
    upload = await written(store, "cut.bin", b"cut short")
    assert isinstance(upload, FileUpload)
    publish = await asyncio.to_thread(store.prepare_commit_sync, upload, None, None)
    assert publish.st is not None
    st = publish.st
    row = VersionRow(
        "cut.bin",
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        publish.sha256,
        None,
        1.0,
        None,
        1.0,
        "upload",
    )
    store.db.record_versions([row])  # the batch's transaction; the crash comes before the rename
    os.close(upload.fd)  # the writer is gone, and its lock with it
    assert [v.path async for v in store.verify() if not v.ok] == ["cut.bin"]
    assert await store.collect_garbage() == 1
    assert [v.path async for v in store.verify()] == ["kept.bin"]
    assert temp_files(store) == []


async def test_a_delete_is_flushed_before_it_returns(
    store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory that lost the entry (or, when it went with its last file, the first one
    left) is flushed before the delete is answered."""
    for path in ("d/a.bin", "d/b.bin", "e/only.bin"):
        upload = await written(store, path, b"x")
        await upload.commit()
    real_fsync = os.fsync
    flushed: list[str] = []

    def fsync(fd: int) -> None:
        flushed.append(os.path.relpath(os.readlink(f"/proc/self/fd/{fd}"), store.root))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    await store.delete("d/a.bin")
    assert flushed == ["d"]
    await store.delete("e/only.bin")
    assert flushed == ["d", "."]
    assert not (store.root / "e").exists()


async def test_a_small_upload_takes_one_thread_hop_in_all(
    store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beginning an upload and buffering a small body touch no disk and no thread; its
    commit makes, writes, hashes and flushes the temp file and then joins its batch in one
    hop (the batch runs in the threads of its writers: no hop of its own)."""
    hops: list[str] = []

    def counted(func: Callable[..., object], /, *args: object) -> asyncio.Future[object]:
        hops.append(getattr(func, "__name__", ""))
        return in_thread(func, *args)

    async def counted_to_thread(func: Callable[..., object], /, *args: object) -> object:
        return await counted(func, *args)

    monkeypatch.setattr(asyncio, "to_thread", counted_to_thread)
    monkeypatch.setattr(upload_module, "in_thread", counted)
    monkeypatch.setattr(groupcommit, "in_thread", counted)
    upload = await written(store, "small.bin", b"small body")
    assert hops == []
    assert temp_files(store) == []
    await upload.commit()
    assert hops == ["_commit_sync"]
    assert await read(store, "small.bin") == b"small body"
    assert temp_files(store) == []


async def test_an_upload_onto_a_directory_fails_at_its_commit_leaving_nothing(
    store: FilesystemStore,
) -> None:
    """With no thread hop in `begin_upload`, a directory at the path is found by the hop
    that would make the temp file: IsDirectoryError from `commit`, no temp file left."""
    await (await written(store, "d/inner.bin", b"x")).commit()
    upload = await written(store, "d", b"onto a directory")
    with pytest.raises(IsDirectoryError):
        await upload.commit()
    assert temp_files(store) == []
    assert await read(store, "d/inner.bin") == b"x"


async def test_an_abort_waits_for_a_cancelled_write_still_in_its_thread(
    store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancelled caller does not stop the worker thread writing its temp file: the abort
    closes the file only once that thread is done, never under it (a descriptor closed and
    reused by another open would take the rest of the write)."""
    entered, release = threading.Event(), threading.Event()
    seen: list[int] = []
    original = FileUpload._write_sync

    def slow_write(self: FileUpload, chunk: bytes) -> None:
        fd = self.open_sync()
        inode = os.fstat(fd).st_ino
        entered.set()
        release.wait(10)
        try:
            seen.append(os.fstat(fd).st_ino - inode)  # 0: still this upload's file
        except OSError as exc:
            seen.append(-(exc.errno or 1))
        original(self, chunk)

    monkeypatch.setattr(FileUpload, "_write_sync", slow_write)
    upload = await store.begin_upload("slow.bin")
    writing = asyncio.ensure_future(upload.write(b"x" * UPLOAD_BATCH_BYTES))
    await asyncio.to_thread(entered.wait, 10)
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    aborting = asyncio.ensure_future(upload.abort())
    await asyncio.sleep(0.2)
    assert not aborting.done()  # waiting for the thread
    release.set()
    await asyncio.wait_for(aborting, 10)
    assert seen == [0]
    assert temp_files(store) == []


async def test_a_batch_that_fails_fails_its_writers_and_the_next_batch_still_runs() -> None:
    """The batches run in their writers' threads: a locked step that raises answers each of
    its writers with the error and still hands the writes queued meanwhile to the next."""
    gate = threading.Event()
    sizes: list[int] = []

    def run_batch(items: Sequence[int]) -> Callable[[], list[int | BaseException]]:
        sizes.append(len(items))
        if items[0] == 0:
            gate.wait(10)  # the rest queue meanwhile
            raise OSError("the first batch fails")
        return lambda: [item * 10 for item in items]

    commits: GroupCommit[int, int] = GroupCommit(run_batch)
    first = asyncio.ensure_future(commits.submit(0))
    while not sizes:
        await asyncio.sleep(0.005)
    rest = [asyncio.ensure_future(commits.submit(item)) for item in range(1, 21)]
    while len(commits._queue) < 20:
        await asyncio.sleep(0.005)
    gate.set()
    with pytest.raises(OSError):
        await first
    assert await asyncio.gather(*rest) == [item * 10 for item in range(1, 21)]
    assert sizes == [1, 20]


async def test_a_delete_cancelled_while_queued_is_withdrawn(store: FilesystemStore) -> None:
    await (await written(store, "stays.bin", b"x")).commit()
    held = HeldBatches(store)
    first = await written(store, "first.bin", b"first")
    blocker = asyncio.ensure_future(first.commit())
    await asyncio.sleep(0.05)
    task = asyncio.ensure_future(store.delete("stays.bin"))
    await queued(store, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    held.gate.set()
    await blocker
    assert held.sizes == [1]
    assert await read(store, "stays.bin") == b"x"


async def test_a_batch_answering_too_few_outcomes_still_wakes_every_writer() -> None:
    # A waiting writer holds a worker thread: one left asleep would never come back.
    def run_batch(items: Sequence[int]) -> Callable[[], list[int | BaseException]]:
        return lambda: []

    commits: GroupCommit[int, int] = GroupCommit(run_batch)
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(commits.submit(item) for item in range(5)), return_exceptions=True), 5
    )
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
