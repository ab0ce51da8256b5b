"""The directory `--workers N` shares its metrics through, and its cleanup after a crash.

prometheus-client's multiprocess mode has every worker write its values to files in one
directory (PROMETHEUS_MULTIPROC_DIR). The supervisor makes it under the temp directory and
removes it when it stops; a supervisor killed with SIGKILL (the OOM killer, `kill -9`) cannot,
so every new supervisor removes the directories of supervisors that are gone. A directory is
gone when nobody holds its lock file: the supervisor holds an exclusive `flock` on it for its
whole life, and the kernel drops that lock with the process however it ends. `flock` is per
open file on the file system, so this holds across PID namespaces sharing one /tmp, where a
PID could not tell a live supervisor from a dead one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator

PREFIX = "artifactd-metrics-"
LOCK_NAME = ".supervisor.lock"  # not a `*.db` file, so the metrics collector never reads it


@contextlib.contextmanager
def metrics_directory() -> Iterator[str]:
    """Make a fresh metrics directory held by this process; remove it on the way out."""
    remove_abandoned()
    path = tempfile.mkdtemp(prefix=PREFIX)
    lock_fd = _hold_lock(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(lock_fd)


def _hold_lock(path: str) -> int:
    """Lock a file under a temporary name, then give it the name others look for: a sweep
    that finds `LOCK_NAME` therefore always finds it locked while this process lives."""
    temporary = os.path.join(path, LOCK_NAME + ".new")
    fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(temporary, os.path.join(path, LOCK_NAME))
    return fd


def remove_abandoned(parent: str | None = None) -> list[str]:
    """Remove every metrics directory under `parent` (the temp directory) whose supervisor
    is gone; returns their paths. A directory without a lock file is left alone: its
    supervisor may be making it right now (or be of an earlier version, which made none)."""
    parent = parent or tempfile.gettempdir()
    removed: list[str] = []
    try:
        names = [n for n in os.listdir(parent) if n.startswith(PREFIX)]
    except OSError:
        return removed
    for name in names:
        path = os.path.join(parent, name)
        try:
            fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # no lock file, someone else's file, or not a directory
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its supervisor is alive
        try:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed
