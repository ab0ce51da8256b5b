"""What a commit looks at on disk and in the metadata: a small upload to a new path resolves
and looks at its target once in its own hop and once in its batch (look_inside), and a
batch asks the metadata about all its new paths at once, with every shortcut still
deciding as a fresh look would."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from artifactd.errors import NotFoundError
from artifactd.store.filesystem import FilesystemStore
from artifactd.store.filesystem.upload import UPLOAD_BATCH_BYTES
from tests.store.test_group_commit import in_one_batch, written

pytestmark = pytest.mark.allow_blocking


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FilesystemStore]:
    opened = await FilesystemStore.create(tmp_path / "root")
    yield opened
    await opened.close()


def rows_of(store: FilesystemStore, path: str) -> list[int]:
    query = "SELECT ino FROM versions WHERE path = ?"
    return [ino for (ino,) in store.db._conn.execute(query, (path,))]


def count_looks(monkeypatch: pytest.MonkeyPatch, target: str) -> list[str]:
    """The stat and lstat calls (os.path's included) at `target`, as they happen."""
    looks: list[str] = []
    for name in ("stat", "lstat"):
        original = getattr(os, name)

        def counting(
            path: object,
            *args: object,
            _original: Callable[..., object] = original,
            _name: str = name,
            **kw: object,
        ) -> object:
            if isinstance(path, str | Path) and os.fspath(path) == target:
                looks.append(_name)
            return _original(path, *args, **kw)

        monkeypatch.setattr(os, name, counting)
    return looks


async def test_a_small_upload_to_a_new_path_looks_at_its_target_once_per_hop(
    store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its hop resolves the path and sees nothing there in one walk (no directory check, no
    look for a current version after); its batch, under the write lock, the same (no second
    look for the current version, the parent or whether the rename replaces anything)."""
    await (await written(store, "put/first", b"makes the directory")).commit()
    looks = count_looks(monkeypatch, str(store.root / "put" / "new"))
    await (await written(store, "put/new", b"small body")).commit()
    assert looks == ["lstat", "lstat"]
    monkeypatch.undo()
    assert (store.root / "put" / "new").read_bytes() == b"small body"
    assert rows_of(store, "put/new") == [os.stat(store.root / "put" / "new").st_ino]


async def test_a_batch_asks_the_metadata_once_about_its_new_paths(
    store: FilesystemStore,
) -> None:
    statements: list[str] = []
    store.db._conn.set_trace_callback(statements.append)
    uploads = [await written(store, f"new/{n}", b"x" * n) for n in range(4)]
    statements.clear()
    await in_one_batch(store, [upload.commit for upload in uploads])
    store.db._conn.set_trace_callback(None)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    # The held first write's batch and this one: one look each.
    assert len(reads) == 2, reads
    assert all(rows_of(store, f"new/{n}") for n in range(4))


async def test_a_new_version_over_an_expired_one_forgets_the_old_row(
    store: FilesystemStore,
) -> None:
    """Nothing current is there (expired), but a file is: the rename replaces it, so its row
    goes (the judge's look says so, with no look of its own before the rename)."""
    await (await written(store, "old.bin", b"old", expires_at=time.time() + 0.2)).commit()
    old_ino = os.stat(store.root / "old.bin").st_ino
    await asyncio.sleep(0.3)
    with pytest.raises(NotFoundError):
        await store.info("old.bin")
    replaced, existed = await (await written(store, "old.bin", b"new")).commit()
    assert not existed
    new_ino = os.stat(store.root / "old.bin").st_ino
    assert new_ino != old_ino
    assert rows_of(store, "old.bin") == [new_ino]
    assert replaced.size == 3


async def test_a_large_upload_looks_again_at_its_commit_for_a_version_made_meanwhile(
    store: FilesystemStore,
) -> None:
    """Its file was made by an earlier hop, which found nothing at its path; an identical
    version stored since is kept (not replaced) at its commit, as one look at that time
    would decide: only a file made by the committing hop itself skips that look."""
    body = b"y" * (UPLOAD_BATCH_BYTES + 1)
    large = await written(store, "big.bin", body)  # its temp file made now: nothing there
    first, _ = await (await written(store, "big.bin", body)).commit()
    again, existed = await large.commit()
    assert existed
    assert again.version == first.version  # kept: not flushed, not renamed
    assert rows_of(store, "big.bin") == [os.stat(store.root / "big.bin").st_ino]


async def test_a_batch_looks_once_at_a_directory_its_writes_share(
    store: FilesystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the write lock, a parent found plain (no link on its way) by one write's look
    is not walked again for the next ones (look_inside's `plain_dirs`): each upload's own
    hop looks at it once, the batch once in all."""
    await (await written(store, "shared/first", b"makes the directory")).commit()
    uploads = [await written(store, f"shared/{n}", b"x" * n) for n in range(4)]
    looks = count_looks(monkeypatch, str(store.root / "shared"))
    await in_one_batch(store, [upload.commit for upload in uploads])
    assert looks == ["lstat"] * (len(uploads) + 1)
    monkeypatch.undo()
    assert sorted(os.listdir(store.root / "shared")) == ["0", "1", "2", "3", "first"]
