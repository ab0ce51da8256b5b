"""Eviction pass cost at N hand-placed 1 KiB artifacts, --max-size at half their total:
each pass's time, the longest event-loop stall during it, and peak RSS.

    .venv/bin/python -m bench.evict_pass 100000
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

from artifactd.evictor import Evictor
from artifactd.store.filesystem import FilesystemStore


async def _probe(longest: list[float]) -> None:
    """How late a 1 ms timer runs, at worst."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(0.001)
        longest[0] = max(longest[0], time.perf_counter() - started - 0.001)


def _place(root: Path, count: int) -> None:
    for i in range(count):
        directory = root / "cache" / f"{i % 100:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"obj-{i:06d}").write_bytes(b"x" * 1024)


async def _measure(root: Path, count: int) -> None:
    await asyncio.to_thread(_place, root, count)
    store = await FilesystemStore.create(root)
    evictor = Evictor(store, max_size_bytes=count * 1024 // 2)
    try:
        for label in ("first pass (records all, evicts half)", "second pass (evicts none)"):
            longest = [0.0]
            probe = asyncio.create_task(_probe(longest))
            started = time.perf_counter()
            report = await evictor.run_once()
            elapsed = time.perf_counter() - started
            probe.cancel()
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            print(
                f"{count} artifacts, {label}: {elapsed:.1f} s, evicted {len(report.over_size)}, "
                f"longest loop stall {longest[0] * 1000:.0f} ms, peak RSS {peak_mb} MB"
            )
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("count", type=int, nargs="?", default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(_measure(Path(directory), args.count))


if __name__ == "__main__":
    main()
