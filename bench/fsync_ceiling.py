"""This disk's ceiling for durable small writes: how many new 4 KiB files per second can be
made durable (data fsynced, then the directory entry) by N threads at once.

    python -m bench.fsync_ceiling [--dir DIR] [--threads 1,4,16] [--seconds 2] [--size 4096]

Two ways, each with N writer threads creating new files in one directory:
- `each`: every file fsynced, then the directory fsynced, by its own thread (one directory
  fsync per file, as a server committing one upload at a time does);
- `batched`: every file fsynced by its own thread, then one directory fsync made durable
  every rename that arrived meanwhile (group commit: one per batch).
The faster of the two at 16 threads is the ceiling a durable PUT of a new path can reach
on this disk, whatever the server does above it (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from artifactd.store.filesystem.upload import fsync_dir


@dataclass
class Ceiling:
    mode: str
    threads: int
    files_per_second: float


class DirSyncer:
    """One directory fsync covers every rename done before it started (group commit)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cond = threading.Condition()
        self._renamed = 0  # renames done so far
        self._durable = 0  # renames covered by a finished fsync
        self._busy = False

    def renamed(self) -> int:
        with self._cond:
            self._renamed += 1
            return self._renamed

    def wait_durable(self, ticket: int) -> None:
        with self._cond:
            while self._durable < ticket:
                if not self._busy:
                    self._busy = True
                    covered = self._renamed
                    self._cond.release()
                    try:
                        fsync_dir(self.directory)
                    finally:
                        self._cond.acquire()
                        self._busy = False
                    self._durable = max(self._durable, covered)
                    self._cond.notify_all()
                else:
                    self._cond.wait()


def measure(directory: Path, mode: str, threads: int, seconds: float, size: int) -> Ceiling:
    """Files made durable per second by `threads` writers for `seconds`."""
    target = directory / f"{mode}-{threads}"
    target.mkdir()
    staging = directory / f"{mode}-{threads}.tmp"
    staging.mkdir()
    payload = os.urandom(size)
    syncer = DirSyncer(target)
    counts = [0] * threads
    deadline = time.monotonic() + seconds

    def writer(index: int) -> None:
        n = 0
        while time.monotonic() < deadline:
            tmp = staging / f"{index}-{n}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, payload)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, target / f"{index}-{n}")
            if mode == "each":
                fsync_dir(target)
            else:
                syncer.wait_durable(syncer.renamed())
            n += 1
        counts[index] = n

    started = time.monotonic()
    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    shutil.rmtree(target)
    shutil.rmtree(staging)
    return Ceiling(mode, threads, sum(counts) / elapsed)


def measure_all(
    directory: Path, threads: list[int], seconds: float, size: int = 4096
) -> list[Ceiling]:
    work = Path(tempfile.mkdtemp(prefix="fsync-ceiling-", dir=directory))
    try:
        return [
            measure(work, mode, n, seconds, size) for n in threads for mode in ("each", "batched")
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fsync_ceiling", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--threads", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args(argv)
    threads = [int(n) for n in args.threads.split(",") if n.strip()]
    print(f"new {args.size}-byte files made durable per second under {args.dir}:")
    for ceiling in measure_all(args.dir, threads, args.seconds, args.size):
        print(
            f"  {ceiling.threads:>3} threads, directory fsync {ceiling.mode:<7}: "
            f"{ceiling.files_per_second:,.0f}/s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
