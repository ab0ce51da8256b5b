"""The aiohttp floor's PUT (bench/baseline_floor.py): the least costly way an aiohttp server
can store a body at a path durably before it answers, a ceiling for artifactd's PUT.

One worker-thread hop per request does all the file work: create any missing parent
directory (its own parent fsynced), write the body to a new temp file in the target
directory, fsync it, hash it (artifactd's answer carries the sha-256), rename it to the path,
then wait until one fsync of the directory covers the rename. That directory fsync is shared
by every rename that arrived meanwhile (bench/fsync_ceiling.py's DirSyncer: group commit, as
artifactd's), so 16 concurrent PUTs into one directory cost 16 file fsyncs in parallel and a
few directory fsyncs, never one directory fsync each. No metadata database, no locks, no
preconditions, no quota: whatever artifactd does beyond this is its own cost.

With `fsync=False` (server `aiohttp-floor-nofsync`) the same without any fsync, as nginx's
WebDAV PUT writes: the floor's cost of the HTTP work alone. With `metadata=True` (server
`aiohttp-floor-meta`) each PUT also makes one row durable in SQLite after its body's fsync
and before its rename (bench/floor_meta.py), as artifactd records its metadata.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from artifactd.store.filesystem.upload import fsync_dir
from bench.floor_meta import RowLog
from bench.fsync_ceiling import DirSyncer

# Enough threads that every connection of the uploads-small workload (wrk -c16) and of the
# cache mix (16 connections) has its fsync in flight at once, as in fsync_ceiling's 16 writers.
THREADS = 32


@dataclass(frozen=True)
class Stored:
    """What a PUT answers: the path, its size and the sha-256 of its bytes."""

    path: str
    size: int
    sha256: str
    info: os.stat_result  # the stored file's, for its headers (the floor's index)


class DurablePuts:
    """Stores bodies under `root`; `store_sync` runs in the worker thread."""

    def __init__(self, root: Path, *, fsync: bool = True, metadata: bool = False) -> None:
        self.root = root
        self.fsync = fsync
        self.rows = RowLog(root) if metadata else None
        self.executor = ThreadPoolExecutor(THREADS, thread_name_prefix="floor-put")
        self._syncers: dict[Path, DirSyncer] = {}
        self._syncers_lock = threading.Lock()
        self._temps = itertools.count(1)  # next() on a count is atomic under the GIL

    def syncer(self, directory: Path) -> DirSyncer:
        with self._syncers_lock:
            found = self._syncers.get(directory)
            if found is None:
                found = self._syncers[directory] = DirSyncer(directory)
            return found

    def make_parents(self, directory: Path) -> None:
        """Create the missing directories down to `directory`, each made durable in its
        parent (a new path's name is only durable once every directory above it is)."""
        missing: list[Path] = []
        while not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        for new in reversed(missing):
            new.mkdir(exist_ok=True)  # or made by a concurrent PUT meanwhile
            if self.fsync:
                fsync_dir(new.parent)

    def store_sync(
        self, rel: str, body: bytes, content_type: str = "application/octet-stream"
    ) -> Stored:
        """Write `body` to `root/rel` as described above; returns once it is durable."""
        target = self.root / rel
        directory = target.parent
        self.make_parents(directory)
        temp = directory / f".floor-put-{os.getpid()}-{next(self._temps)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
            info = os.fstat(fd)  # the rename keeps inode and mtime
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        os.close(fd)
        digest = hashlib.sha256(body).hexdigest()
        if self.rows is not None:  # durable before the name, as artifactd's rows are
            row = (rel, info.st_ino, info.st_size, info.st_mtime_ns, digest, content_type)
            self.rows.record((*row, time.time(), None))
        os.rename(temp, target)
        if self.fsync:
            syncer = self.syncer(directory)
            syncer.wait_durable(syncer.renamed())
        return Stored(rel, len(body), digest, info)
