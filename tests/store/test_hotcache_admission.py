"""The hot cache's admission (store/filesystem/hotcache.py, `HotCache.admits`): a full cache
takes a key read again soon only over a stale entry or one read less often lately, so a
uniform stream of many keys no longer copies a key and evicts another on most reads, while
a key read again and again gets in at once."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from artifactd.store.filesystem import FilesystemStore, hotcache
from artifactd.store.filesystem.hotcache import FrequencySketch
from artifactd.store.readers import MemoryReader
from artifactd.web.download import plan as plan_module
from tests.web.conftest import store_bytes

KEYS = [f"k/{i:02d}.bin" for i in range(8)]


@pytest.fixture
async def store(
    storage_root: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FilesystemStore]:
    monkeypatch.setattr(hotcache, "MAX_ENTRIES", 4)
    monkeypatch.setattr(hotcache, "HOT_TTL_SECONDS", 3600.0)  # nothing goes stale by itself
    store = await FilesystemStore.create(storage_root)
    for path in KEYS:
        await store_bytes(store, path, os.urandom(4096))
    yield store
    await store.close()


async def read(store: FilesystemStore, path: str) -> bool:
    """Read `path` as a download does; whether it came from (or went into) the hot cache."""
    reader = store.open_now(path)
    assert reader is not None
    await reader.aclose()
    await store.record_access(path)
    return isinstance(reader, MemoryReader)


async def fill(store: FilesystemStore, keys: list[str]) -> None:
    for path in keys:
        assert not await read(store, path)  # read once: not copied
        assert await read(store, path)  # read again soon, the cache has room: copied


async def test_a_full_cache_keeps_its_entries_against_keys_read_as_often(
    store: FilesystemStore,
) -> None:
    kept, newcomer = KEYS[:4], KEYS[4]
    await fill(store, kept)
    # Read twice, as each kept key was: copying it would evict the least recently used
    # entry for a key no more likely to be read again (a plain LRU's churn).
    assert not await read(store, newcomer)
    assert not await read(store, newcomer)
    assert all(store.hot.checkout(path) is not None for path in kept)
    assert store.hot.checkout(newcomer) is None


async def test_a_key_read_more_often_than_the_least_recent_entry_gets_in_at_once(
    store: FilesystemStore,
) -> None:
    await fill(store, KEYS[:4])
    for path in KEYS[1:4]:  # KEYS[0] is now the least recently used entry
        assert store.hot.checkout(path) is not None
    hot = KEYS[5]
    assert [await read(store, hot) for _ in range(3)] == [False, False, True]
    assert store.hot.checkout(hot) is not None
    assert store.hot.checkout(KEYS[0]) is None  # the one evicted
    assert all(store.hot.checkout(path) is not None for path in KEYS[1:4])


async def test_a_stale_entry_makes_room(
    store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hotcache, "HOT_TTL_SECONDS", 0.2)
    await fill(store, KEYS[:4])
    await asyncio.sleep(0.3)  # every entry is past its trust: none can serve a read
    newcomer = KEYS[6]
    assert not await read(store, newcomer)
    assert await read(store, newcomer)  # read as often as the stale one: copied over it


async def test_a_key_replaced_after_admission_is_never_served_old(
    store: FilesystemStore,
) -> None:
    await fill(store, KEYS[:4])
    await store_bytes(store, KEYS[1], b"new bytes")
    reader = store.open_now(KEYS[1])
    assert reader is not None
    try:
        assert reader.info.size == len(b"new bytes")
    finally:
        await reader.aclose()


def test_the_sketch_counts_saturates_and_fades(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hotcache, "SKETCH_SAMPLE", 40)
    sketch = FrequencySketch()
    assert [sketch.add("a") for _ in range(3)] == [1, 2, 3]
    assert sketch.estimate("a") == 3
    assert sketch.estimate("never read") == 0
    for _ in range(20):
        sketch.add("b")
    assert sketch.estimate("b") == 15  # saturated
    for i in range(17):  # the 40th read halves every count
        sketch.add(f"other {i}")
    assert (sketch.estimate("a"), sketch.estimate("b")) == (1, 7)


def test_the_plain_plans_cached_cover_every_kept_version() -> None:
    """A hit on a kept version finds the plan made when it was kept, even with the hot
    cache full: as many plans cached as versions kept."""
    maxsize = plan_module._plain_get.cache_parameters()["maxsize"]
    assert maxsize is not None and maxsize >= hotcache.MAX_ENTRIES


async def test_a_file_opened_in_a_worker_thread_is_admitted_by_the_same_rule(
    store: FilesystemStore, storage_root: Path
) -> None:
    """A file placed by hand is opened (and digested) in a worker thread, not on the loop:
    once the cache is full it takes an entry by the same rule, not over a key read more
    often."""
    kept = KEYS[:4]
    await fill(store, kept)
    (storage_root / "by-hand.bin").write_bytes(os.urandom(4096))
    assert store.open_now("by-hand.bin") is None  # not recorded: the loop leaves it
    reader = await store.open("by-hand.bin")
    await reader.aclose()
    assert store.hot.checkout("by-hand.bin") is None
    assert all(store.hot.checkout(path) is not None for path in kept)
