"""The filesystem backend's metadata index as the source of maintenance: keyset pages,
prefixes, running totals, the schema migration, and reconciliation with the tree."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifactd.evictor import Evictor
from artifactd.store.base import ArtifactInfo, Usage
from artifactd.store.filesystem import FilesystemStore
from artifactd.store.filesystem.metadb import MetadataDB, VersionRow
from artifactd.store.filesystem.metaqueries import prefix_end
from artifactd.store.filesystem.reconcile import reconcile
from artifactd.store.filesystem.schema import SCHEMA

# Path-like strings: the characters around '/' in code-point order, and beyond ASCII.
PATH_CHARS = st.sampled_from(["a", "b", "-", ".", "/", "0", "é", "\uffff", "\U0001f600"])
PATHS = st.lists(st.text(PATH_CHARS, min_size=1, max_size=6), unique=True, max_size=40)


def row(path: str, ino: int = 1, size: int = 1, **extra: float | None) -> VersionRow:
    created = extra.pop("created_at", None) or 1.0
    return VersionRow(path, ino, size, 1, None, None, created, extra.get("expires_at"), None)


@pytest.fixture
def db(tmp_path: Path) -> MetadataDB:
    return MetadataDB(tmp_path / "metadata.db")


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(paths=PATHS, page_size=st.integers(1, 7), data=st.data())
def test_keyset_pages_yield_each_path_once_in_order(
    tmp_path: Path, paths: list[str], page_size: int, data: st.DataObject
) -> None:
    db = MetadataDB(tmp_path / f"m{abs(hash((tuple(paths), page_size)))}.db")
    try:
        for i, path in enumerate(paths):
            db.upsert(row(path, ino=i))
        prefix = data.draw(st.text(PATH_CHARS, max_size=2), label="prefix")
        seen: list[str] = []
        after: str | None = None
        while page := db.page(prefix, after, page_size):
            assert len(page) <= page_size
            seen += [r.path for r in page]
            after = page[-1].path
        assert seen == sorted(p for p in paths if p.startswith(prefix))
    finally:
        db.close()


@given(prefix=st.text(PATH_CHARS, max_size=4), path=st.text(PATH_CHARS, max_size=6))
def test_a_prefix_is_one_range(prefix: str, path: str) -> None:
    end = prefix_end(prefix)
    in_range = prefix <= path and (end is None or path < end)
    assert in_range == path.startswith(prefix)


def test_prefix_end_steps_over_surrogates_and_the_last_code_point() -> None:
    assert prefix_end("a\ud7ff") == "a\ue000"
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff") is None


def test_least_recent_pages_follow_access_then_creation_and_skip_the_expired(
    db: MetadataDB,
) -> None:
    db.upsert(row("new", created_at=30.0))
    db.upsert(row("old", created_at=10.0))
    db.upsert(row("gone", created_at=5.0, expires_at=50.0))
    db.upsert(row("read", created_at=1.0))
    db.record_accesses({"read": 20.0})
    order: list[str] = []
    key = None
    while page := db.least_recent(key, 1, live_at=60.0):
        order.append(page[0].path)
        r = page[0]
        key = (r.last_accessed or r.created_at, r.path, r.ino)
    assert order == ["old", "read", "new"]
    assert [r.path for r in db.expired(60.0, None, 10)] == ["gone"]
    assert db.expired(40.0, None, 10) == []


def test_running_totals_follow_inserts_replaces_updates_and_deletes(db: MetadataDB) -> None:
    db.upsert(row("a", size=10))
    db.upsert(row("b", size=5, expires_at=100.0))
    db.upsert(row("a", size=7))  # INSERT OR REPLACE of the same (path, inode)
    db.record_found_version(row("c", ino=9, size=3))
    db.record_found_version(row("c", ino=9, size=4))  # rewritten in place by hand
    assert db.totals(now=50.0) == (3, 7 + 5 + 4, 0)
    assert db.totals(now=150.0) == (2, 7 + 4, 1)
    db.delete_other_versions_many({"a": None})
    db.delete_versions([("c", 9)])
    assert db.totals(now=50.0) == (1, 5, 0)
    assert db.usage_under("b", now=50.0) == (1, 5)
    assert db.usage_under("x", now=50.0) == (0, 0)


def test_an_old_database_is_migrated_with_its_totals(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)  # schema version 0: the table alone
    conn.executemany(
        "INSERT INTO versions (path, ino, size, mtime_ns, created_at) VALUES (?, ?, ?, 1, 1.0)",
        [("a", 1, 10), ("b", 2, 20)],
    )
    conn.commit()
    conn.close()
    db = MetadataDB(path)
    try:
        assert db.schema_version == 1
        assert db.totals(now=2.0) == (2, 30, 0)
        db.upsert(row("c", ino=3, size=5))
        assert db.totals(now=2.0) == (3, 35, 0)
        indexes = {
            name
            for (name,) in db._conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        assert {"versions_lru", "versions_expiry"} <= indexes
    finally:
        db.close()
    reopened = MetadataDB(path)  # migrating again changes nothing
    try:
        assert reopened.totals(now=2.0) == (3, 35, 0)
    finally:
        reopened.close()


async def put(store: FilesystemStore, path: str, body: bytes, ttl: float | None = None) -> None:
    upload = await store.begin_upload(path, expires_at=None if ttl is None else time.time() + ttl)
    await upload.write(body)
    await upload.commit()


async def walked(store: FilesystemStore) -> Usage:
    """What a walk of every artifact says the usage is."""
    count = size = expired = 0
    async for info in store.iter_artifacts(include_expired=True):
        if info.is_expired():
            expired += 1
        else:
            count += 1
            size += info.size
    return Usage(count, size, expired)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FilesystemStore]:
    opened = await FilesystemStore.create(tmp_path / "root")
    try:
        yield opened
    finally:
        await opened.close()


async def test_usage_is_kept_through_commits_replaces_deletes_and_evictions(
    store: FilesystemStore,
) -> None:
    for i in range(6):
        await put(store, f"u/{i}", b"x" * (i + 1))
    await put(store, "u/0", b"y" * 100)  # replaced
    await put(store, "u/1", b"xx")  # the same bytes again: kept
    await put(store, "short", b"z" * 7, ttl=0.05)
    await store.delete("u/2")
    infos = [info async for info in store.iter_artifacts("u/")]
    assert await store.evict_batch(infos[:2]) == [True, True]
    await asyncio.sleep(0.1)
    usage = await store.usage()
    assert usage == await walked(store)
    assert usage == Usage(3, 4 + 5 + 6, 1)
    assert await store.usage("u/") == Usage(3, 15)


async def test_pages_continue_after_a_cursor_and_skip_the_expired(
    store: FilesystemStore,
) -> None:
    for name in ["a/1", "a/2", "a/3", "ab", "b/1"]:
        await put(store, name, name.encode())
    await put(store, "a/0", b"old", ttl=0.05)
    await asyncio.sleep(0.1)
    assert [i.path async for i in store.iter_artifacts("a/", after="a/1")] == ["a/2", "a/3"]
    assert [i.path async for i in store.iter_artifacts("a/", include_expired=True)] == [
        "a/0",
        "a/1",
        "a/2",
        "a/3",
    ]


async def test_reconcile_indexes_files_placed_changed_and_removed_by_hand(
    store: FilesystemStore,
) -> None:
    await put(store, "up/loaded", b"uploaded")
    (store.root / "hand" / "deep").mkdir(parents=True)
    (store.root / "hand" / "deep" / "placed").write_bytes(b"12345")
    (store.root / "top").write_bytes(b"1")
    assert [i.path async for i in store.iter_artifacts()] == ["up/loaded"]  # not yet known
    await store.reconcile()
    assert [i.path async for i in store.iter_artifacts()] == [
        "hand/deep/placed",
        "top",
        "up/loaded",
    ]
    assert await store.usage() == Usage(3, 8 + 5 + 1)
    (store.root / "top").write_bytes(b"123")  # changed in place
    os.unlink(store.root / "up" / "loaded")  # removed by hand
    (store.state_dir / "reconciled").unlink()  # the pacing of walks is not under test here
    await store.reconcile()
    assert [(i.path, i.size) async for i in store.iter_artifacts()] == [
        ("hand/deep/placed", 5),
        ("top", 3),
    ]
    assert await store.usage() == Usage(2, 8)
    rows = await asyncio.to_thread(lambda: [r.path for r in store.db.iter_all()])
    assert rows == ["hand/deep/placed", "top"]
    # The digest of a found file is computed on first read, as for any hand-placed file.
    async with await store.open("top") as reader:
        assert reader.info.sha256 is not None


async def test_reconcile_of_one_directory_walks_only_it(store: FilesystemStore) -> None:
    for directory in ("in", "out"):
        (store.root / directory).mkdir()
        (store.root / directory / "f").write_bytes(b"x")
    await store.reconcile("in")
    assert [i.path async for i in store.iter_artifacts()] == ["in/f"]


async def test_a_reader_of_an_evicted_file_does_not_record_it_again(
    store: FilesystemStore,
) -> None:
    # A read that opened a hand-placed file just before its eviction hashed it after: its
    # row came back, describing bytes no longer there (5,001 rows for 5,000 files).
    (store.root / "hand").mkdir()
    placed = store.root / "hand" / "f"
    placed.write_bytes(b"bytes")
    await store.reconcile()
    [info] = [i async for i in store.iter_artifacts()]
    fd = os.open(placed, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        assert await store.evict_batch([info]) == [True]
        await asyncio.to_thread(store.digests.describe_unknown, "hand/f", st, fd)
    finally:
        os.close(fd)
    rows = await asyncio.to_thread(lambda: list(store.db.iter_all()))
    assert rows == []
    assert await store.usage() == Usage(0, 0)


async def test_an_eviction_pass_streams_from_the_index(
    store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(30):
        await put(store, f"c/{i:02d}", b"x" * 10)
    await put(store, "c/expired", b"e", ttl=0.05)
    await store.record_access("c/00")  # read most recently: kept
    await asyncio.sleep(0.1)

    def no_walk(*args: object, **kwargs: object) -> AsyncIterator[ArtifactInfo]:
        raise AssertionError("an eviction pass walked every artifact")

    monkeypatch.setattr(store, "iter_artifacts", no_walk)
    report = await Evictor(store, max_size_bytes=100).run_once()
    assert report.expired == ["c/expired"]
    assert len(report.over_size) == 20
    assert "c/00" not in report.over_size
    assert (report.live_artifacts, report.live_bytes) == (10, 100)
    monkeypatch.undo()
    assert await store.usage() == await walked(store) == Usage(10, 100)


async def test_links_leaving_the_root_are_never_indexed_or_listed(
    store: FilesystemStore, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (store.root / "in").mkdir()
    (store.root / "in" / "real").write_bytes(b"real")
    (store.root / "in" / "inner-link").symlink_to(store.root / "in" / "real")
    (store.root / "in" / "file-link").symlink_to(outside / "secret")
    (store.root / "dir-link").symlink_to(outside)
    await store.reconcile()
    assert [i.path async for i in store.iter_artifacts()] == ["in/inner-link", "in/real"]
    assert await store.usage() == Usage(2, 8)
    # A directory replaced by a link after its files were indexed: their rows are not listed.
    (store.root / "moved").mkdir()
    (store.root / "moved" / "secret").write_bytes(b"secret")
    (store.state_dir / "reconciled").unlink()
    await store.reconcile()
    (store.root / "moved" / "secret").unlink()
    (store.root / "moved").rmdir()
    (store.root / "moved").symlink_to(outside)
    assert [i.path async for i in store.iter_artifacts()] == ["in/inner-link", "in/real"]


async def test_whole_root_walks_are_paced_across_processes(store: FilesystemStore) -> None:
    (store.root / "first").write_bytes(b"1")
    await store.reconcile()
    pacing = store.state_dir / "reconciled"
    assert float(pacing.read_text()) <= time.time() + 1  # a small tree: walked again at once
    pacing.write_text(repr(time.time() + 3600))  # as after a long walk, by any process
    (store.root / "second").write_bytes(b"2")
    await store.reconcile()
    assert [i.path async for i in store.iter_artifacts()] == ["first"]
    await store.reconcile("")  # the whole root: paced
    other = await FilesystemStore.create(store.root)
    try:
        await other.reconcile()
        assert [i.path async for i in other.iter_artifacts()] == ["first"]
    finally:
        await other.close()
    pacing.unlink()
    await store.reconcile()
    assert [i.path async for i in store.iter_artifacts()] == ["first", "second"]


async def test_rows_another_process_removed_first_are_not_counted_or_announced(
    store: FilesystemStore,
) -> None:
    """A delete by another process between the sweep's page read and its write lock: the
    rows are already gone, so nothing was forgotten and the row generation (which empties
    every process's read index and hot cache) stays as it is."""
    await put(store, "gone", b"bytes")
    (row_of_gone,) = await asyncio.to_thread(lambda: list(store.db.iter_all()))
    os.unlink(store.root / "gone")  # that process's delete: unlinked, rows not yet gone
    lock = store._write_lock
    held = lock.held

    @contextlib.contextmanager
    def held_after_that_delete() -> Iterator[None]:
        with held():
            store.db.delete_versions([(row_of_gone.path, row_of_gone.ino)])  # its rows now
            yield

    bumps: list[list[str]] = []
    lock.held = held_after_that_delete  # type: ignore[method-assign]
    try:
        report = await asyncio.to_thread(reconcile, store.root, store.db, lock, "", bumps.append)
    finally:
        del lock.held
    assert (report.forgotten, bumps) == (0, [])


async def test_a_listing_reads_the_rows_of_its_own_entries_only(
    store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ["d/x", "d/sub/y", "d/sub/deeper/z", "other/w"]:
        await put(store, name, b"x")
    asked: list[str] = []
    real = store.db.rows_for_paths

    def spy(paths: list[str]) -> list[VersionRow]:
        asked.extend(paths)
        return real(paths)

    monkeypatch.setattr(store.db, "rows_for_paths", spy)
    assert [e.name for e in await store.list_dir("d")] == ["sub", "x"]
    assert sorted(asked) == ["d/sub", "d/x"]
    asked.clear()
    page, more = await store.list_dir_page("d", None, 1)
    assert ([e.name for e in page], more) == (["sub"], True)
    assert len(asked) <= 2  # the page and one entry past it, never the directory


def vm_steps(db: MetadataDB, query: Callable[[], list[VersionRow]], rows: int) -> int:
    """Hundreds of SQLite VM instructions `query` runs (it must return `rows` rows)."""
    counted = [0]

    def count() -> int:
        counted[0] += 1
        return 0  # go on

    db._conn.set_progress_handler(count, 100)
    try:
        assert len(query()) == rows
    finally:
        db._conn.set_progress_handler(None, 0)
    return counted[0]


def test_a_page_costs_the_same_wherever_its_cursor_is(db: MetadataDB) -> None:
    db.record_found_versions([row(f"p/{i:05d}", ino=i) for i in range(5000)])
    near_start = vm_steps(db, lambda: db.page("p/", "p/00100", 50), 50)
    near_end = vm_steps(db, lambda: db.page("p/", "p/04900", 50), 50)
    assert near_end < 2 * near_start + 10, (near_start, near_end)


def test_a_page_of_least_recent_under_a_prefix_reads_the_lru_order(db: MetadataDB) -> None:
    db.record_found_versions(
        [row(f"p{i % 3}/{i:05d}", ino=i, created_at=float(i + 1)) for i in range(6000)]
    )
    anywhere = vm_steps(db, lambda: db.least_recent(None, 20, live_at=0.0), 20)
    in_prefix = vm_steps(db, lambda: db.least_recent(None, 20, live_at=0.0, prefix="p1/"), 20)
    # A third of the rows are under p1/: reading the LRU order costs about three times a
    # page; sorting the whole prefix for each page cost a hundred times more.
    assert in_prefix < 5 * anywhere + 10, (anywhere, in_prefix)


def counted_pages(store: FilesystemStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The prefixes of the index pages read (the sweep for rows of removed files)."""
    asked: list[str] = []
    real = store.db.page

    def page(prefix: str, *args: object, **kwargs: object) -> list[VersionRow]:
        asked.append(prefix)
        return real(prefix, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store.db, "page", page)
    return asked


async def test_a_walk_that_finds_a_file_for_every_row_reads_no_index_page(
    store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each row describes a file the walk just saw, and no write ran meanwhile: no row can
    describe a removed file, so the pages of the whole index are not read and stated."""
    for name in ("a/1", "a/2", "b/3"):
        await put(store, name, b"bytes")
    (store.root / "hand").write_bytes(b"placed")
    pages = counted_pages(store, monkeypatch)
    report = await asyncio.to_thread(
        reconcile, store.root, store.db, store._write_lock, "", lambda p: None, lambda: 0
    )
    assert (report.files, report.recorded, report.forgotten, pages) == (4, 1, 0, [])
    os.unlink(store.root / "a" / "2")  # removed by hand: a row more than the files
    report = await asyncio.to_thread(
        reconcile, store.root, store.db, store._write_lock, "", lambda p: None, lambda: 0
    )
    assert (report.files, report.forgotten, pages[:1]) == (3, 1, [""])
    rows = await asyncio.to_thread(lambda: [r.path for r in store.db.iter_all()])
    assert rows == ["a/1", "b/3", "hand"]


async def test_a_write_during_the_walk_still_sweeps_the_index(
    store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit or removal by any process while the walk ran may hide a row of a removed
    file behind a file the walk saw: then the index is swept as before."""
    for name in ("a/1", "a/2"):
        await put(store, name, b"bytes")
    pages = counted_pages(store, monkeypatch)
    changes = iter([1, 2])  # the write generation before and after the walk
    report = await asyncio.to_thread(
        reconcile,
        store.root,
        store.db,
        store._write_lock,
        "",
        lambda p: None,
        lambda: next(changes),
    )
    assert (report.files, report.forgotten, pages[:1]) == (2, 0, [""])


async def test_a_file_replaced_by_hand_has_its_old_row_forgotten(store: FilesystemStore) -> None:
    await put(store, "f", b"old")
    (store.root / "f.new").write_bytes(b"a new file, a new inode")  # while the old one lives
    os.replace(store.root / "f.new", store.root / "f")
    report = await asyncio.to_thread(
        reconcile, store.root, store.db, store._write_lock, "", lambda p: None, lambda: 0
    )
    assert (report.recorded, report.forgotten) == (1, 1)
    rows = await asyncio.to_thread(lambda: [(r.path, r.size) for r in store.db.iter_all()])
    assert rows == [("f", len(b"a new file, a new inode"))]


async def test_the_walk_reads_only_the_identity_of_each_files_rows(
    store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Path, inode, size and mtime are all the walk compares: whole rows (ten columns and a
    VersionRow each) cost a pass over 20,000 files about a quarter of its CPU."""
    await put(store, "known", b"bytes")
    (store.root / "hand").write_bytes(b"placed")

    def whole_rows(paths: object) -> list[VersionRow]:
        raise AssertionError("whole rows read by the walk")

    monkeypatch.setattr(store.db, "rows_for_paths", whole_rows)
    report = await asyncio.to_thread(
        reconcile, store.root, store.db, store._write_lock, "", lambda p: None, lambda: 0
    )
    assert (report.files, report.recorded, report.forgotten) == (2, 1, 0)
