"""A storage root on a nearly full disk (a small tmpfs): every commit, delete, eviction and
read either works or fails with StorageFullError (507) leaving the old state, never with
another error, and `verify` finds every recorded version intact at the end."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from artifactd.errors import NotFoundError, StorageFullError
from artifactd.evictor import Evictor
from artifactd.store.base import ArtifactInfo
from artifactd.store.filesystem import FilesystemStore
from artifactd.store.memory import MemoryStore
from tests.smalldisk import KIB, Filler, mounted_tmpfs


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "disk") as mountpoint:
        yield mountpoint


async def put(
    store: FilesystemStore, path: str, data: bytes, expires_at: float | None = None
) -> None:
    upload = await store.begin_upload(path, expires_at=expires_at)
    await upload.write(data)
    await upload.commit()


async def read(store: FilesystemStore, path: str) -> bytes:
    async with await store.open(path) as reader:
        await store.record_access(path)  # flushed by the eviction pass, on a full disk
        return await reader.read(0, reader.info.size)


@pytest.mark.allow_blocking
async def test_a_full_disk_refuses_writes_with_storage_full_and_keeps_the_old_state(
    small_disk: Path,
) -> None:
    rng = random.Random(15)
    store = await FilesystemStore.create(small_disk / "root")
    stored: dict[str, bytes] = {}
    for number in range(30):
        stored[f"keep/{number}"] = rng.randbytes(64 * KIB)
        await put(store, f"keep/{number}", stored[f"keep/{number}"])
    for number in range(30):
        await put(store, f"old/{number}", rng.randbytes(64 * KIB), expires_at=time.time() + 1)
    placed: dict[str, bytes] = {}
    for number in range(40):
        placed[f"hand/{number}"] = rng.randbytes(4 * KIB)
        (small_disk / "root" / "hand").mkdir(exist_ok=True)
        (small_disk / "root" / f"hand/{number}").write_bytes(placed[f"hand/{number}"])

    filler = Filler(small_disk / "filler")
    outcomes = {"done": 0, "full": 0}
    for round_ in range(400):
        filler.leave_free(rng.choice([0, 0, 4, 8, 16, 32, 48, 64, 96, 128]) * KIB)
        path = f"keep/{rng.randrange(30)}"
        try:
            if round_ % 10 == 9 and path in stored:
                await store.delete(path)
                del stored[path]
            else:
                data = rng.randbytes(rng.choice([1, 4, 16, 40, 64]) * KIB)
                await put(store, path, data)
                stored[path] = data
            outcomes["done"] += 1
        except StorageFullError:
            outcomes["full"] += 1
        except NotFoundError:
            assert path not in stored
        if path in stored:
            assert await read(store, path) == stored[path]  # the old version, whole
        else:
            with pytest.raises(NotFoundError):
                await store.open(path)
    assert outcomes["done"] > 20 and outcomes["full"] > 20, outcomes

    # An eviction pass on a full disk removes every expired artifact, in one pass.
    await asyncio.sleep(max(0.0, 1.1))
    filler.leave_free(0)
    report = await Evictor(store).run_once()
    assert sorted(report.expired) == sorted(f"old/{number}" for number in range(30))
    with pytest.raises(NotFoundError):
        await store.open("old/0")

    # Files placed by hand are served even when their digest cannot be recorded.
    filler.leave_free(0)
    for path, data in placed.items():
        assert await read(store, path) == data

    filler.empty()
    for path, data in stored.items():
        assert await read(store, path) == data
    results = [result async for result in store.verify()]
    assert [result for result in results if not result.ok] == []
    assert {result.path for result in results} >= set(stored)
    await store.close()


class FailingEvictions(MemoryStore):
    """A store in which removing some artifacts fails (a full or read-only disk)."""

    def __init__(self, failing: set[str]) -> None:
        super().__init__()
        self.failing = failing

    async def evict(self, info: ArtifactInfo) -> bool:
        if info.path in self.failing:
            raise StorageFullError("no space left on the storage device")
        return await super().evict(info)


async def test_an_eviction_pass_skips_what_it_cannot_remove_and_goes_on() -> None:
    store = FailingEvictions({"b"})
    for path in ("a", "b", "c"):
        upload = await store.begin_upload(path, expires_at=time.time() - 1)
        await upload.write(b"x")
        await upload.commit()
    report = await Evictor(store).run_once()
    assert report.expired == ["a", "c"]
    assert [info.path async for info in store.iter_artifacts(include_expired=True)] == ["b"]
