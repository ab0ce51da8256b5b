"""Many small artifacts for the random-keys and cache-mix workloads: created once per run,
recorded in each artifactd root's metadata beforehand (as uploads would have left them).

Key `i` is `keys/<i % 256 as 2 hex digits>/<i as 6 digits>.bin`: bench/wrk.lua (mode=keys)
computes the same names, so wrk needs no list of paths.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

KEYS_DIR = "keys"
KEY_SIZE = 4 * 1024


def key_name(i: int) -> str:
    return f"{KEYS_DIR}/{i % 256:02x}/{i:06d}.bin"


def create_keys(data_dir: Path, count: int) -> None:
    """`count` random files of KEY_SIZE bytes under `data_dir/keys/`, flushed with one
    `sync` at the end (no writeback during the timed phases)."""
    for d in range(min(count, 256)):
        (data_dir / KEYS_DIR / f"{d:02x}").mkdir(parents=True, exist_ok=True)
        os.chmod(data_dir / KEYS_DIR / f"{d:02x}", 0o755)
    os.chmod(data_dir / KEYS_DIR, 0o755)
    block = os.urandom(KEY_SIZE * 64)
    for i in range(count):
        start = (i * 97) % (len(block) - KEY_SIZE)  # distinct enough; each file its own bytes
        data = i.to_bytes(8, "big") + block[start + 8 : start + KEY_SIZE]
        with open(data_dir / key_name(i), "wb") as out:
            out.write(data)
    os.sync()


def link_keys(data_dir: Path, root: Path, count: int) -> None:
    """Hard links to the keys under an artifactd root (the same pages as nginx reads)."""
    for d in range(min(count, 256)):
        (root / KEYS_DIR / f"{d:02x}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        os.link(data_dir / key_name(i), root / key_name(i))


def record_keys(root: Path, count: int) -> None:
    """Open every key once through artifactd's own store, so each has its metadata row
    (digest, content type) before the server starts, as an upload would have left it."""
    from artifactd.store.filesystem import FilesystemStore

    async def run() -> None:
        store = await FilesystemStore.create(root)
        try:
            names = [key_name(i) for i in range(count)]
            for start in range(0, count, 64):
                readers = await asyncio.gather(*(store.open(n) for n in names[start : start + 64]))
                for reader in readers:
                    await reader.aclose()
        finally:
            await store.close()

    asyncio.run(run())
