"""Temp files whose writer may die: each is locked (flock) by its writer for as long as it
writes, so a temp file that can be locked has no live writer. The kernel drops the locks of
dead processes, which makes this exact across processes and crashes."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

# A temp file is created under this prefix, locked, then renamed to its real name: a
# cleaner never sees the real name unlocked while its writer lives.
NEW_PREFIX = "new-"
# A `new-` file this old belongs to a writer that died between creating and locking it.
NEW_FILE_GRACE_SECONDS = 60.0


def create_locked(path: Path) -> int:
    """Create `path` for writing, already holding its lock; returns the descriptor."""
    new_path = path.with_name(NEW_PREFIX + path.name)
    fd = os.open(new_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(new_path, path)
    except BaseException:
        os.close(fd)
        new_path.unlink(missing_ok=True)
        raise
    return fd


def remove_abandoned(directory: Path, prefix: str) -> int:
    """Delete the temp files (named `prefix...`) in `directory` that no writer holds."""
    removed = 0
    for entry in os.scandir(directory):
        if entry.name.startswith(NEW_PREFIX):
            with contextlib.suppress(FileNotFoundError):
                if time.time() - entry.stat().st_mtime > NEW_FILE_GRACE_SECONDS:
                    os.unlink(entry.path)
                    removed += 1
        elif entry.name.startswith(prefix) and _unlocked(entry.path):
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
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a writer holds it
    finally:
        os.close(fd)  # also drops our lock, if we got it
    return True
