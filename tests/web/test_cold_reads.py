"""Cold reads: a recorded version is opened on the loop (store/filesystem/loopopen.py), no
worker thread, no Application; every change by another process is seen by the next read.

"Another process" is a second FilesystemStore on the same root: it shares nothing with the
serving one but the files, the metadata database, the write lock and the generation counter.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from artifactd.http.digests import etag_for_digest
from artifactd.http.mediatypes import guess_content_type
from artifactd.settings import Settings
from artifactd.store.base import ArtifactInfo
from artifactd.store.filesystem import FilesystemStore, hotcache
from artifactd.store.filesystem.loopopen import LoopOpener
from artifactd.store.filesystem.store import FilesystemStore as StoreClass
from artifactd.store.readers import MemoryReader
from artifactd.web.download import plan as plan_module
from artifactd.web.keys import STORE
from tests.web.conftest import store_bytes
from tests.web.serving import Served, serving

KEYS = {f"k/{i:02x}/{i:04d}.bin": os.urandom(4096) for i in range(40)}


@pytest.fixture
async def root(storage_root: Path) -> Path:
    store = await FilesystemStore.create(storage_root)
    for path, data in KEYS.items():
        await store_bytes(store, path, data)
    await store.close()
    return storage_root


@pytest.fixture
async def other(root: Path) -> AsyncIterator[FilesystemStore]:
    """The other process's store."""
    store = await FilesystemStore.create(root)
    yield store
    await store.close()


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths opened in a worker thread (the way every cold read went before)."""
    opened: list[str] = []
    open_sync = StoreClass._open_sync

    def counted(self: FilesystemStore, path: str) -> object:
        opened.append(path)
        return open_sync(self, path)

    monkeypatch.setattr(StoreClass, "_open_sync", counted)
    return opened


async def get(served: Served, path: str, method: str = "GET") -> tuple[int, bytes, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{served.url}/files/{path}") as response,
    ):
        return response.status, await response.read(), response.headers.get("ETag", "")


async def test_recorded_keys_are_answered_without_a_thread_or_the_application(
    root: Path, threads: list[str]
) -> None:
    async with serving(Settings(root=root), hot=True) as served:
        for path, data in KEYS.items():
            status, body, etag = await get(served, path)
            assert (status, body) == (200, data)
            assert etag == etag_for_digest(hashlib.sha256(data).hexdigest())
        # HEAD too: its headers from the hot path.
        status, body, _ = await get(served, "k/01/0001.bin", "HEAD")
        assert (status, body) == (200, b"")
        assert served.reached_application == []
    assert threads == []


async def test_replaced_deleted_or_given_an_expiry_by_another_process_seen_at_once(
    root: Path, other: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hotcache, "HOT_TTL_SECONDS", 3600.0)  # only the generation tells
    async with serving(Settings(root=root), hot=True) as served:
        for path in KEYS:
            assert (await get(served, path))[0] == 200  # now in the hot cache too
        replaced, deleted, expiring = list(KEYS)[:3]
        await store_bytes(other, replaced, b"new bytes")
        await other.delete(deleted)
        # Far enough ahead for the reads below to come first on a loaded machine; then
        # waited for exactly, not for a fixed time.
        expires_at = time.time() + 1.0
        await store_bytes(other, expiring, KEYS[expiring], expires_at=expires_at)
        assert (await get(served, replaced))[:2] == (200, b"new bytes")
        assert (await get(served, deleted))[0] == 404
        assert (await get(served, expiring))[:2] == (200, KEYS[expiring])
        await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.05)
        assert (await get(served, expiring))[0] == 404
        store = served.app[STORE]
        assert isinstance(store, FilesystemStore)
        store.hot.clear()  # the rest cold: opened on the loop again
        for path in list(KEYS)[3:]:
            assert (await get(served, path))[:2] == (200, KEYS[path])


async def test_hand_placed_and_hand_changed_files_are_digested_in_the_thread(
    root: Path, threads: list[str]
) -> None:
    (root / "k" / "placed.bin").write_bytes(b"placed by hand")
    changed = next(iter(KEYS))
    with open(root / changed, "r+b") as f:  # the same inode, other bytes and size
        f.write(b"changed in place")
        f.truncate()
    async with serving(Settings(root=root), hot=True) as served:
        for path, data in (("k/placed.bin", b"placed by hand"), (changed, b"changed in place")):
            status, body, etag = await get(served, path)
            assert (status, body) == (200, data)
            assert etag == etag_for_digest(hashlib.sha256(data).hexdigest())
    assert threads == ["k/placed.bin", changed]


async def test_what_the_loop_may_not_open_goes_to_the_thread(
    root: Path, threads: list[str]
) -> None:
    target = next(iter(KEYS))
    os.symlink(root / target, root / "k" / "link.bin")  # a symlink, inside the root
    os.mkfifo(root / "k" / "fifo.bin")
    async with serving(Settings(root=root), hot=True) as served:
        assert (await get(served, "k/link.bin"))[:2] == (200, KEYS[target])
        assert (await get(served, "k/fifo.bin"))[0] == 404  # never hangs
        assert (await get(served, "k"))[0] == 200  # the directory's listing
    assert threads == ["k/link.bin", "k/fifo.bin", "k"]


async def test_a_miss_is_answered_on_the_loop_when_the_open_proves_it(
    root: Path, threads: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """ENOENT (or ENOTDIR) with no link on the way proves the miss: no thread. Through a
    link, the thread judges it (a link leaving the root is refused there, not a 404)."""
    outside = tmp_path_factory.mktemp("outside")
    os.symlink(outside, root / "k" / "out")
    os.symlink(root / "k" / "00", root / "k" / "in")
    async with serving(Settings(root=root), hot=True) as served:
        assert (await get(served, "k/missing.bin"))[0] == 404
        assert (await get(served, "k/no/such/dir.bin"))[0] == 404
        assert (await get(served, "k/00/0000.bin/below.bin"))[0] == 404  # ENOTDIR
        assert (await get(served, "k/missing.bin", "HEAD"))[0] == 404
        assert threads == []
        (root / "k" / "placed.bin").write_bytes(b"placed by hand")
        assert (await get(served, "k/placed.bin"))[:2] == (200, b"placed by hand")
        assert threads == ["k/placed.bin"]  # a file there now: digested in the thread
        threads.clear()
        assert (await get(served, "k/in/missing.bin"))[0] == 404
        assert (await get(served, "k/out/missing.bin"))[0] == 400
    assert threads == ["k/in/missing.bin", "k/out/missing.bin"]


async def loaded_store(served: Served) -> FilesystemStore:
    store = served.app[STORE]
    assert isinstance(store, FilesystemStore)
    assert store.loop_open.loader is not None
    await asyncio.to_thread(store.loop_open.loader.join)
    return store


async def test_the_read_index_answers_without_sqlite(root: Path, threads: list[str]) -> None:
    async with serving(Settings(root=root), hot=True) as served:
        store = await loaded_store(served)
        assert len(store.loop_open.index) == len(KEYS)
        with store.loop_open.lookup._lock:  # SQLite unusable from the loop meanwhile
            for path, data in KEYS.items():
                assert (await get(served, path))[:2] == (200, data)
        assert served.reached_application == []
    assert threads == []


async def test_a_busy_lookup_falls_back_to_the_thread(root: Path, threads: list[str]) -> None:
    async with serving(Settings(root=root), hot=True) as served:
        store = await loaded_store(served)
        store.loop_open.index.clear()
        path = next(iter(KEYS))
        with store.loop_open.lookup._lock:  # another statement on the connection: no wait
            assert (await get(served, path))[:2] == (200, KEYS[path])
    assert threads == [path]


async def test_an_expiry_given_elsewhere_is_not_missed_by_the_read_index(
    root: Path, other: FilesystemStore
) -> None:
    path, data = next(iter(KEYS.items()))
    async with serving(Settings(root=root), hot=True) as served:
        store = await loaded_store(served)
        store.hot.clear()
        await store_bytes(other, path, data, expires_at=time.time() - 1)  # same bytes
        store.hot.clear()
        assert (await get(served, path))[0] == 404


async def test_the_read_index_outlives_commits_of_new_versions_elsewhere(
    root: Path, other: FilesystemStore, threads: list[str]
) -> None:
    """New keys and identical re-uploads (no new expiry) change no row the index holds:
    its entries stay good, and so do the hot cache's (the same row generation)."""
    async with serving(Settings(root=root), hot=True) as served:
        store = await loaded_store(served)
        before = store.hot.current_generation()
        for i in range(5):
            await store_bytes(other, f"k/new/{i}.bin", os.urandom(4096))
        path, data = next(iter(KEYS.items()))
        await store_bytes(other, path, data)  # kept, with its row as it was
        assert store.hot.current_generation() == before
        store.hot.clear()
        with store.loop_open.lookup._lock:  # SQLite unusable from the loop meanwhile
            for path, data in KEYS.items():
                assert (await get(served, path))[:2] == (200, data)
    assert threads == []


async def test_a_new_expiry_given_elsewhere_is_read_again(
    root: Path, other: FilesystemStore
) -> None:
    path, data = next(iter(KEYS.items()))
    async with serving(Settings(root=root), hot=True) as served:
        store = await loaded_store(served)
        expires = time.time() + 3600
        await store_bytes(other, path, data, expires_at=expires)  # same bytes: kept
        store.hot.clear()
        reader = store.open_now(path)
        assert reader is not None
        async with reader:
            assert reader.info.expires_at == pytest.approx(expires)


async def test_a_version_removed_elsewhere_retires_its_index_entry(
    root: Path, other: FilesystemStore
) -> None:
    """Its inode may come back at the same path, as another version of the same size and,
    within one timestamp tick, the same mtime: the entry must not describe it."""
    deleted, replaced, evicted = list(KEYS)[:3]
    async with serving(Settings(root=root), hot=True) as served:
        store = await loaded_store(served)
        opener = store.loop_open
        olds = {p: os.stat(root / p) for p in (deleted, replaced, evicted)}

        def known(path: str) -> bool:
            st = olds[path]
            rows = opener.row_generation()
            return opener.index.find(path, st.st_ino, st.st_size, st.st_mtime_ns, rows) is not None

        assert known(deleted) and known(replaced)
        await other.delete(deleted)
        assert not known(deleted)
        assert (await get(served, replaced))[0] == 200  # read again from SQLite
        assert known(replaced)
        await store_bytes(other, replaced, os.urandom(4096))
        assert not known(replaced)
        assert (await get(served, evicted))[0] == 200
        assert known(evicted)
        assert await other.evict_batch([await other.info(evicted)]) == [True]
        assert not known(evicted)


async def test_a_file_changed_by_hand_after_its_entry_is_digested_again(
    root: Path, threads: list[str]
) -> None:
    path = next(iter(KEYS))
    async with serving(Settings(root=root), hot=True) as served:
        await loaded_store(served)
        assert (await get(served, path))[:2] == (200, KEYS[path])
        new = os.urandom(4096)  # the same size, in place: the same inode
        with open(root / path, "r+b") as f:
            f.write(new)
        os.utime(root / path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a later mtime
        status, body, etag = await get(served, path)
        assert (status, body) == (200, new)
        assert etag == etag_for_digest(hashlib.sha256(new).hexdigest())
    assert threads == [path]


async def test_an_inode_back_at_its_path_after_a_removal_by_hand_retires_the_entry(
    root: Path, other: FilesystemStore
) -> None:
    """A file deleted by hand keeps its row; the next upload to the path may get the same
    inode (ext4 gives it back at once), which finds that row: the entry must go."""
    path = next(iter(KEYS))
    async with serving(Settings(root=root), hot=True) as served:
        store = await loaded_store(served)
        opener = store.loop_open
        old = os.stat(root / path)
        os.unlink(root / path)
        new = os.urandom(len(KEYS[path]))
        await store_bytes(other, path, new)
        rows = opener.row_generation()
        found = opener.index.find(path, old.st_ino, old.st_size, old.st_mtime_ns, rows)
        assert os.stat(root / path).st_ino != old.st_ino or found is None
        status, body, etag = await get(served, path)
        assert (status, body) == (200, new)
        assert etag == etag_for_digest(hashlib.sha256(new).hexdigest())


async def test_what_this_server_removes_leaves_the_rest_of_its_read_index_good(
    root: Path, threads: list[str]
) -> None:
    """Its own delete, eviction, and a row of a file removed by hand that its reconciliation
    forgets: the rows of those paths only, so the other keys' next reads need no SQLite
    (other processes still see the row generation move, and read theirs again)."""
    deleted, evicted, by_hand, *rest = list(KEYS)
    async with serving(Settings(root=root), hot=True) as served:
        store = await loaded_store(served)
        before = store.loop_open.row_generation()
        async with (
            aiohttp.ClientSession() as session,
            session.delete(f"{served.url}/files/{deleted}") as response,
        ):
            assert response.status == 204
        assert await store.evict_batch([await store.info(evicted)]) == [True]
        os.unlink(root / by_hand)
        await store.reconcile(by_hand.rsplit("/", 1)[0])  # its directory: not paced
        assert store.loop_open.row_generation() == before + 3
        store.hot.clear()
        served.reached_application.clear()  # the DELETE
        with store.loop_open.lookup._lock:  # SQLite unusable from the loop meanwhile
            for path in rest:
                assert (await get(served, path))[:2] == (200, KEYS[path])
            for path in (deleted, evicted, by_hand):
                assert (await get(served, path))[0] == 404
        assert served.reached_application == []
    assert threads == []


async def test_new_keys_stored_elsewhere_leave_the_hot_cache_hot(
    root: Path, other: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache's PUTs are new keys: they change no version another process holds, so its
    hot entries stay (before, every commit made them all cold)."""
    monkeypatch.setattr(hotcache, "HOT_TTL_SECONDS", 3600.0)  # only the generations tell
    opened: list[str] = []
    loop_open = LoopOpener.open

    def counted(self: LoopOpener, path: str, **kwargs: bool) -> object:
        opened.append(path)
        return loop_open(self, path, **kwargs)

    monkeypatch.setattr(LoopOpener, "open", counted)
    hot_key = next(iter(KEYS))
    async with serving(Settings(root=root), hot=True) as served:
        for _ in range(2):  # a second read makes a key hot
            assert (await get(served, hot_key))[:2] == (200, KEYS[hot_key])
        opened.clear()
        await store_bytes(other, "k/new/one.bin", b"a new key")
        assert (await get(served, hot_key))[:2] == (200, KEYS[hot_key])
        assert opened == []  # from the hot cache
        assert (await get(served, "k/new/one.bin"))[:2] == (200, b"a new key")


async def test_a_key_deleted_by_hand_then_stored_elsewhere_is_seen_at_once(
    root: Path, other: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its row is left (until reconciliation), so the new version is not a new key: the
    hot entry of the old one must go, though no file was there to replace."""
    monkeypatch.setattr(hotcache, "HOT_TTL_SECONDS", 3600.0)
    key = next(iter(KEYS))
    async with serving(Settings(root=root), hot=True) as served:
        for _ in range(2):
            assert (await get(served, key))[:2] == (200, KEYS[key])
        store = await loaded_store(served)
        assert store.hot.checkout(key) is not None  # hot
        with open(root / key, "rb"):  # held open: its inode cannot come back at once
            (root / key).unlink()
            await store_bytes(other, key, b"stored again")
            assert (await get(served, key))[:2] == (200, b"stored again")


async def test_only_a_key_read_again_soon_is_copied_into_the_hot_cache(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A random key among many, read again long after, is not worth a hot-cache copy (and
    the eviction of another entry); one read again while an entry would be trusted is."""
    monkeypatch.setattr(hotcache, "HOT_TTL_SECONDS", 0.2)
    store = await FilesystemStore.create(root)
    try:
        late, soon, once = list(KEYS)[:3]

        async def read(path: str) -> bool:
            """Whether the read came from (or went into) the hot cache."""
            reader = store.open_now(path)
            assert reader is not None
            await reader.aclose()
            await store.record_access(path)
            return isinstance(reader, MemoryReader)

        assert not await read(late)
        await asyncio.sleep(0.3)
        assert not await read(soon)
        assert not await read(once)
        assert await read(soon)  # read again within HOT_TTL_SECONDS: copied
        assert not await read(late)  # read again after it: not copied
        assert store.hot.checkout(late) is None
        assert store.hot.checkout(soon) is not None
    finally:
        await store.close()


def plan_caches() -> tuple[functools._CacheInfo, functools._CacheInfo]:
    return plan_module._plain_get.cache_info(), plan_module.representation.cache_info()


async def test_a_key_read_once_is_planned_without_the_plan_caches(
    root: Path, other: FilesystemStore
) -> None:
    """A key read once comes with an ArtifactInfo kept nowhere (`info_once`): no later
    request presents it again, so its plan is not cached (the caches could only miss, and
    each miss evicts another plan); a key read again, kept in the hot cache, is. A version
    replaced meanwhile is answered with its own headers either way."""
    once, again, headed = list(KEYS)[:3]
    async with serving(Settings(root=root), hot=True) as served:
        await loaded_store(served)
        before = plan_caches()
        status, body, etag = await get(served, once)
        assert (status, body) == (200, KEYS[once])
        assert (await get(served, headed, "HEAD"))[0] == 200
        assert plan_caches() == before
        for _ in range(3):  # read again at once: kept in the hot cache, its plan cached
            assert (await get(served, again))[:2] == (200, KEYS[again])
        plain, _ = plan_caches()
        assert (plain.misses, plain.hits) == (before[0].misses + 1, before[0].hits + 1)
        await store_bytes(other, once, b"replaced")
        status, body, new_etag = await get(served, once)
        assert (status, body) == (200, b"replaced")
        assert new_etag == etag_for_digest(hashlib.sha256(b"replaced").hexdigest()) != etag
    assert served.reached_application == []


async def test_a_cold_read_describes_the_version_as_its_row_and_its_file_do(
    root: Path,
) -> None:
    """From the read index or from SQLite, a cold read's ArtifactInfo is the file's size,
    mtime and version with its row's digest, times and content type (guessed from the
    name when the row has none), and the access time noted in memory if any."""
    typed = "k/page.html"
    async with serving(Settings(root=root), hot=True) as served:
        store = await loaded_store(served)
        await store_bytes(store, typed, b"<p>hi</p>", expires_at=time.time() + 3600)
        await store_bytes(store, "k/typed.bin", b"typed", content_type="text/x-typed")
        await store.record_access(typed)
        for path in (next(iter(KEYS)), typed, "k/typed.bin"):
            row = await asyncio.to_thread(store.db.find, path, os.stat(root / path).st_ino)
            assert row is not None
            for use_index in (True, False):
                store.hot.clear()
                if not use_index:
                    store.loop_open.index.clear()
                reader = store.open_now(path)
                assert reader is not None
                await reader.aclose()
                st = os.stat(root / path)
                accessed = store._accessed.get(path)
                if accessed is not None:  # else the row's from SQLite; the index has none
                    assert reader.info.last_accessed == accessed
                assert replace(reader.info, last_accessed=None) == ArtifactInfo(
                    path=path,
                    size=st.st_size,
                    content_type=row.content_type or guess_content_type(path),
                    modified_at=st.st_mtime,
                    created_at=row.created_at,
                    sha256=row.sha256,
                    expires_at=row.expires_at,
                    version=f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}",
                )
        assert store._accessed.get(typed) is not None
        assert guess_content_type(typed) == "text/html"
