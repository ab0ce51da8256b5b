"""The CPU a small upload's worker-thread side costs per write, without the disk: its temp
file made, written, hashed, checked and "flushed", then published by a batch, all in one
thread, on tmpfs, with fsync and the metadata transaction left out (they wait on the disk,
whose cost `bench/fsync_ceiling.py` measures). Python and system calls only: steadier than
a server's CPU per PUT on a shared machine, for comparing two builds of commits.py.

    python -m bench.commit_cpu [--batches 400] [--batch 8] [--size 4096] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

from artifactd.store.filesystem import FilesystemStore
from artifactd.store.filesystem.upload import FileUpload

WARM_UP_BATCHES = 50
# The upload's file made in the hop that commits it, as a small PUT's is (`fresh`); builds
# before that keyword looked at the target again whatever the hop.
FRESH = (
    {"fresh": True}
    if "fresh" in inspect.signature(FilesystemStore.prepare_commit_sync).parameters
    else {}
)


async def cpu_per_write(batches: int, batch: int, size: int, directory: str) -> float:
    """Microseconds of this thread's CPU per write, over `batches` batches of `batch`."""
    store = await FilesystemStore.create(Path(tempfile.mkdtemp(dir=directory)) / "root")
    body = b"x" * size
    spent, writes = 0.0, 0
    try:
        with (
            mock.patch.object(os, "fsync", lambda fd: None),
            mock.patch.object(store.db, "record_versions", lambda rows: None),
        ):
            for number in range(batches + WARM_UP_BATCHES):
                uploads: list[FileUpload] = []
                for index in range(batch):
                    upload = await store.begin_upload(
                        f"put/p-{number}-{index}", content_type=None, expires_at=None
                    )
                    assert isinstance(upload, FileUpload)
                    await upload.write(body)
                    uploads.append(upload)
                seconds = await asyncio.to_thread(_publish_sync, store, uploads)
                if number >= WARM_UP_BATCHES:
                    spent, writes = spent + seconds, writes + batch
    finally:
        await store.close()
    return spent / writes * 1e6


def _publish_sync(store: FilesystemStore, uploads: Sequence[FileUpload]) -> float:
    started = time.thread_time()
    prepared = []
    for upload in uploads:
        pending = b"".join(upload._pending)
        upload._pending = []
        upload._write_sync(pending)
        prepared.append(store.prepare_commit_sync(upload, None, None, **FRESH))
    store._write_batch_sync(prepared)()
    return time.thread_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--dir", default="/dev/shm", help="where the root goes (tmpfs)")
    args = parser.parse_args()
    micros = asyncio.run(cpu_per_write(args.batches, args.batch, args.size, args.dir))
    print(f"{micros:.1f} µs of CPU per write (batches of {args.batch}, {args.size} bytes)")


if __name__ == "__main__":
    main()
