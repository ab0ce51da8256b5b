"""Temp files whose writer may die: each is locked (flock) by its writer for as long as it
writes, so a temp file that can be locked has no live writer. The kernel drops the locks of
dead processes, which makes this exact across processes and crashes.

A writer creates and locks its file while holding a shared lock on the directory, and a
cleaner scans holding it exclusively: a cleaner never sees a file its living writer has
not locked yet, so every unlocked file it sees is a dead writer's and goes at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

# Temp files were once created under this prefix and renamed once locked; a file still
# named so was left by a writer that died in between.
NEW_PREFIX = "new-"


@contextlib.contextmanager
def _directory_locked(directory: str | Path, operation: int) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)  # drops the lock


def create_locked(path: str | Path) -> int:
    """Create `path` for writing, already holding its lock; returns the descriptor."""
    with _directory_locked(os.path.dirname(path), fcntl.LOCK_SH):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            raise
    return fd


def remove_abandoned(
    directory: Path,
    prefix: str,
    before_removing: Callable[[list[int]], None] | None = None,
) -> int:
    """Delete the temp files (named `prefix...`) in `directory` that no writer holds.
    `before_removing` is told their inode numbers first, while no other file can have them
    (what a dead writer recorded about them can go)."""
    abandoned: list[os.DirEntry[str]] = []
    with _directory_locked(directory, fcntl.LOCK_EX):
        for entry in os.scandir(directory):
            if entry.name.startswith(NEW_PREFIX) or (
                entry.name.startswith(prefix) and _unlocked(entry.path)
            ):
                abandoned.append(entry)
        if before_removing is not None and abandoned:
            inodes = []
            for entry in abandoned:
                with contextlib.suppress(FileNotFoundError):
                    inodes.append(entry.inode())
            before_removing(inodes)
        removed = 0
        for entry in abandoned:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed += 1
    return removed


def _unlocked(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a writer holds it
        # A writer that published its file renamed it before letting go of the lock: if
        # it did so since our open, the name no longer leads to what we locked (whose
        # inode is now a published version's, and its rows must stay).
        try:
            return os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False
    finally:
        os.close(fd)  # also drops our lock, if we got it
