"""A small disk for tests of what happens when it fills up: a tmpfs mounted for the test
(this needs root, which the test machine has: a missing permission fails the test, clearly,
rather than skipping what it checks), and a file that takes whatever space is left."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

DISK_BYTES = 64 * 1024 * 1024
KIB = 1024


@contextlib.contextmanager
def mounted_tmpfs(mountpoint: Path, size: int = DISK_BYTES) -> Iterator[Path]:
    mountpoint.mkdir(exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.fail(
            "the disk-full tests mount a small tmpfs and need root (CAP_SYS_ADMIN): "
            f"mount said: {mounted.stderr.strip()}"
        )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


class Filler:
    """A file on the small disk that takes whatever space is left, then gives some back."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)

    def fill(self) -> None:
        for block in (1024 * KIB, 64 * KIB, 4 * KIB, 512):
            data = bytes(block)
            while True:
                try:
                    os.write(self.fd, data)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break

    def leave_free(self, nbytes: int) -> None:
        """Fill the disk, then free `nbytes` of it."""
        self.fill()
        os.ftruncate(self.fd, max(0, os.fstat(self.fd).st_size - nbytes))

    def empty(self) -> None:
        os.ftruncate(self.fd, 0)
        os.close(self.fd)
