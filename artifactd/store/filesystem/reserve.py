"""Space kept aside so that removing an artifact works on a full disk.

A delete or eviction unlinks the file first, then deletes its metadata row; on a disk full
to the last block even that row's deletion may need a few new pages of the database's
write-ahead log. The reserve, a preallocated file under `.artifactd/`, is given up for that
write and taken back once the removal has freed space. Used under the root's write lock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

RESERVE_BYTES = 256 * 1024
MIN_REFILL_BYTES = 16 * 1024


class SpaceReserve:
    def __init__(self, path: Path, size: int = RESERVE_BYTES) -> None:
        self.path = path
        self.size = size

    def refill(self) -> None:
        """Take the reserve back, as much of it as the disk allows (never raises)."""
        with contextlib.suppress(OSError):
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                size = self.size
                while size >= MIN_REFILL_BYTES:
                    try:
                        allocate(fd, size)
                        return
                    except OSError:
                        size //= 2
            finally:
                os.close(fd)

    def release(self) -> bool:
        """Give the reserve up; False when there was none to give."""
        try:
            if os.stat(self.path).st_blocks == 0:
                return False
            os.truncate(self.path, 0)
        except OSError:
            return False
        return True


def allocate(fd: int, size: int) -> None:
    """Make the first `size` bytes of the file take space on the disk (not a hole that a
    later write, or a store through a memory map, would have to find space for); the bytes
    already there are kept. OSError (ENOSPC) when the disk has no room for them."""
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)
        return
    end = os.fstat(fd).st_size
    if end < size:  # without fallocate (macOS): write the missing bytes
        os.pwrite(fd, bytes(size - end), end)
