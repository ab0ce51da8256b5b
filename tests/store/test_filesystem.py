"""What only the filesystem backend does: hand-placed files, symlinks, persistence."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from artifactd.errors import InvalidPathError, NotFoundError
from artifactd.store.base import Upload
from artifactd.store.filesystem import FilesystemStore, digests, hotcache
from artifactd.store.filesystem.upload import UPLOAD_BATCH_BYTES


@pytest.fixture
async def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


async def make_store(root: Path) -> FilesystemStore:
    return await FilesystemStore.create(root)


@pytest.mark.allow_blocking
async def test_hand_placed_file_is_served_with_its_digest(root: Path) -> None:
    store = await make_store(root)
    (root / "manual").mkdir()
    (root / "manual" / "notes.txt").write_bytes(b"by hand")
    info = await store.info("manual/notes.txt")
    assert info.sha256 == hashlib.sha256(b"by hand").hexdigest()
    assert info.content_type == "text/plain"
    await store.close()


@pytest.mark.allow_blocking
async def test_file_changed_by_hand_gets_new_digest_and_etag_within_the_cache_bound(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hotcache, "HOT_TTL_SECONDS", 0.05)
    store = await make_store(root)
    (root / "f").write_bytes(b"one")
    first = await store.info("f")
    (root / "f").write_bytes(b"two, longer")
    time.sleep(0.1)  # past the bound on serving a hand-edited file's previous version
    second = await store.info("f")
    assert second.sha256 == hashlib.sha256(b"two, longer").hexdigest()
    assert first.etag != second.etag
    await store.close()


@pytest.mark.allow_blocking
async def test_large_hand_placed_file_is_served_before_its_hash_is_known(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(digests, "INLINE_HASH_LIMIT_BYTES", 10)
    store = await make_store(root)
    (root / "big").write_bytes(b"x" * 100)
    info = await store.info("big")
    assert info.sha256 is None
    assert info.etag.startswith('"v-')
    store.digests.pool.shutdown(wait=True)  # let the background hash land
    again = await store.info("big")
    assert again.sha256 == hashlib.sha256(b"x" * 100).hexdigest()
    await store.close()


@pytest.mark.allow_blocking
async def test_symlink_leaving_the_root_is_refused(root: Path, tmp_path: Path) -> None:
    store = await make_store(root)
    outside = tmp_path / "secret"
    outside.write_text("secret")
    (root / "link").symlink_to(outside)
    (root / "dirlink").symlink_to(tmp_path)
    with pytest.raises(InvalidPathError):
        await store.open("link")
    with pytest.raises(InvalidPathError):
        await store.open("dirlink/secret")
    assert [e.name for e in await store.list_dir("")] == []
    await store.close()


@pytest.mark.allow_blocking
async def test_symlink_inside_the_root_is_followed(root: Path) -> None:
    store = await make_store(root)
    (root / "real.txt").write_text("real")
    (root / "alias.txt").symlink_to(root / "real.txt")
    async with await store.open("alias.txt") as reader:
        assert await reader.read(0, 10) == b"real"
    await store.close()


@pytest.mark.allow_blocking
async def test_internal_state_is_unreachable(root: Path) -> None:
    store = await make_store(root)
    with pytest.raises(NotFoundError):
        await store.open(".artifactd/metadata.db")
    (root / "sneaky").symlink_to(root / ".artifactd" / "metadata.db")
    with pytest.raises(NotFoundError):
        await store.open("sneaky")
    assert ".artifactd" not in [e.name for e in await store.list_dir("")]
    await store.close()


@pytest.mark.allow_blocking
async def test_fifo_in_the_root_is_not_served(root: Path) -> None:
    store = await make_store(root)
    os.mkfifo(root / "pipe")
    with pytest.raises(NotFoundError):
        await store.open("pipe")
    await store.close()


async def test_metadata_survives_a_restart(root: Path) -> None:
    store = await make_store(root)
    upload = await store.begin_upload(
        "keep/me", content_type="application/x-custom", expires_at=4_000_000_000.0
    )
    await upload.write(b"data")
    await upload.commit()
    await store.close()

    reopened = await make_store(root)
    info = await reopened.info("keep/me")
    assert info.content_type == "application/x-custom"
    assert info.expires_at == 4_000_000_000.0
    assert info.sha256 == hashlib.sha256(b"data").hexdigest()
    await reopened.close()


async def test_upload_leaves_no_temp_file(root: Path) -> None:
    store = await make_store(root)
    upload = await store.begin_upload("t")
    await upload.write(b"abc")
    await upload.abort()
    upload = await store.begin_upload("t")
    await upload.write(b"abc")
    await upload.commit()
    assert os.listdir(store.tmp_dir) == []
    await store.close()


async def test_a_commit_by_another_process_is_seen_at_once(root: Path) -> None:
    """Two stores on one root stand for two worker processes: the write generation in the
    shared memory map invalidates the reader's hot cache immediately."""
    reader_side = await make_store(root)
    writer_side = await make_store(root)
    for store, data in ((writer_side, b"first"), (writer_side, b"second version")):
        upload = await store.begin_upload("shared.txt")
        await upload.write(data)
        await upload.commit()
        async with await reader_side.open("shared.txt") as reader:
            assert await reader.read(0, 100) == data
    await writer_side.delete("shared.txt")
    with pytest.raises(NotFoundError):
        await reader_side.open("shared.txt")
    await reader_side.close()
    await writer_side.close()


async def test_hot_large_file_reader_is_pinned_to_its_version(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hotcache, "SMALL_FILE_BYTES", 10)  # cache an fd, not bytes
    store = await make_store(root)
    upload = await store.begin_upload("big")
    await upload.write(b"A" * 100)
    await upload.commit()
    (await store.open("big")).fileno()  # fills the cache
    hot = await store.open("big")  # served from the cached descriptor
    assert hot.fileno() is not None
    upload = await store.begin_upload("big")
    await upload.write(b"B" * 50)
    await upload.commit()
    assert await hot.read(0, 200) == b"A" * 100
    await hot.aclose()
    async with await store.open("big") as fresh:
        assert await fresh.read(0, 200) == b"B" * 50
    await store.close()


async def test_open_now_serves_what_open_cached_until_any_process_changes_a_version(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hotcache, "SMALL_FILE_BYTES", 10)
    store, other_process = await make_store(root), await make_store(root)
    for path, data in (("small", b"tiny"), ("large", b"L" * 100)):
        upload = await store.begin_upload(path)
        await upload.write(data)
        await upload.commit()
        assert store.hot.checkout(path) is None  # not opened since the commit
        for _ in range(2):  # a key read once is not worth a hot-cache entry yet
            async with await store.open(path):
                pass
            await store.record_access(path)  # as every download does
        reader = store.open_now(path)
        assert reader is not None
        async with reader:
            assert await reader.read(0, 200) == data
            assert (reader.fileno() is not None) == (path == "large")  # bytes vs descriptor
    upload = await other_process.begin_upload("unrelated")
    await upload.write(b"x")
    await upload.commit()
    assert store.hot.checkout("small") is not None  # a new key changes no version held
    upload = await other_process.begin_upload("large")
    await upload.write(b"M" * 100)  # replaced by another process
    await upload.commit()
    assert store.hot.checkout("small") is None  # a version changed: look again
    assert store.hot.checkout("large") is None
    for path, data in (("small", b"tiny"), ("large", b"M" * 100)):
        reader = store.open_now(path)  # recorded: opened again on the loop
        assert reader is not None
        async with reader:
            assert await reader.read(0, 200) == data
    await store.close()
    await other_process.close()


async def test_only_one_process_holds_the_maintenance_lock(root: Path) -> None:
    first, second = await make_store(root), await make_store(root)
    async with first.maintenance_lock() as held_by_first:
        assert held_by_first
        async with second.maintenance_lock() as held_by_second:
            assert not held_by_second
    async with second.maintenance_lock() as held_after:
        assert held_after
    await first.close()
    await second.close()


async def test_stale_uploads_are_removed_but_live_ones_kept(root: Path) -> None:
    store = await make_store(root)
    live = await store.begin_upload("live")
    await live.write(b"x" * UPLOAD_BATCH_BYTES)  # a batch: written to its temp file at once
    (store.tmp_dir / "upload-deadbeef.part").write_bytes(b"left by a crash")
    assert await store.collect_garbage() == 1
    assert len(os.listdir(store.tmp_dir)) == 1
    await live.commit()
    await store.close()


async def test_stale_upload_cleaning_never_removes_a_starting_upload(root: Path) -> None:
    """Uploads beginning while the cleaner runs (as at startup) must keep their temp file."""
    store = await make_store(root)

    async def upload(i: int) -> None:
        pending = await store.begin_upload(f"race/{i}")
        await pending.write(b"x")
        await pending.commit()

    for round_ in range(20):
        await asyncio.gather(
            *(upload(round_ * 10 + i) for i in range(10)),
            *(store.collect_garbage() for _ in range(5)),
        )
    assert len([i async for i in store.iter_artifacts("race/")]) == 200
    await store.close()


OPEN_FRESH_ROOTS = """
import logging, sys, time
from pathlib import Path
from artifactd.store.filesystem import FilesystemStore
logging.basicConfig(level=logging.WARNING, format="%(message)s")
start, roots = float(sys.argv[1]), sys.argv[2:]
for number, root in enumerate(roots):
    time.sleep(max(0.0, start + 0.2 * number - time.time()))  # all processes at once
    FilesystemStore(Path(root))
"""


def test_processes_opening_a_new_root_together_warn_of_no_lost_metadata(tmp_path: Path) -> None:
    """`serve --workers 4` on a new root: every worker opens it at once, and none may take
    another's half-made state directory for a root whose metadata went missing."""
    roots = [str(tmp_path / f"root{number}") for number in range(10)]
    start = time.time() + 2.0  # past every interpreter's start-up
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_FRESH_ROOTS, str(start), *roots],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=60)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, outputs
    assert not any("missing or empty" in output for output in outputs), outputs


@pytest.mark.allow_blocking
async def test_a_commit_racing_the_delete_of_its_last_sibling_lands(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delete removes the parent directories it empties; a commit into that directory
    at the same moment (here: in another process) must neither fail nor be refused."""
    rename, rmdir = os.rename, os.rmdir

    def slow_rename(source: str, target: str) -> None:
        time.sleep(0.010)  # a busy machine: each step may wait for a core
        rename(source, target)

    def slow_rmdir(path: str) -> None:
        time.sleep(0.005)
        rmdir(path)

    monkeypatch.setattr(os, "rename", slow_rename)
    monkeypatch.setattr(os, "rmdir", slow_rmdir)
    store = await make_store(root)
    other_process = await make_store(root)

    async def commit_soon(upload: Upload) -> None:
        await asyncio.sleep(0.001)  # just after the delete started
        await upload.commit()

    for number in range(5):
        directory = f"d{number}/sub"
        upload = await other_process.begin_upload(f"{directory}/sibling")
        await upload.write(b"old")
        await upload.commit()
        upload = await other_process.begin_upload(f"{directory}/new")
        await upload.write(b"new")
        await asyncio.gather(store.delete(f"{directory}/sibling"), commit_soon(upload))
        async with await store.open(f"{directory}/new") as reader:
            assert await reader.read(0, 10) == b"new"
    await store.close()
    await other_process.close()


async def test_evict_batch_forgets_the_rows_of_what_it_removed(tmp_path: Path) -> None:
    store = await FilesystemStore.create(tmp_path / "root")
    try:
        infos = []
        for i in range(50):
            upload = await store.begin_upload(f"many/{i % 5}/obj-{i}")
            await upload.write(b"x" * i)
            infos.append((await upload.commit())[0])
        assert await store.evict_batch(infos[:40]) == [True] * 40
        left = [info.path async for info in store.iter_artifacts()]
        assert left == sorted(info.path for info in infos[40:])
        rows = await asyncio.to_thread(lambda: sorted(row.path for row in store.db.iter_all()))
        assert rows == left  # one row per file
        assert sorted(p.name for p in (tmp_path / "root" / "many").iterdir()) == [
            "0",
            "1",
            "2",
            "3",
            "4",
        ]
    finally:
        await store.close()
