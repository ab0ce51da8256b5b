"""The test files: created once per run, fsynced, warmed into the page cache before a phase."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.config import MiB, Scale, human_size


@dataclass
class TestFiles:
    data_dir: Path
    names: dict[str, str]  # role -> file name under data_dir
    sizes: dict[str, int]
    large_sha256: str
    disk_write_gbps: float
    sha256_gbps: float

    def path(self, role: str) -> Path:
        return self.data_dir / self.names[role]


def create_files(workdir: Path, scale: Scale) -> TestFiles:
    """Random files, written and fsynced so no writeback runs during the timed phases."""
    data_dir = workdir / "data"
    data_dir.mkdir()
    sizes = {"large": scale.large, "growth": scale.growth, "medium": scale.medium}
    sizes["small"] = scale.small
    names = {role: f"{role}-{human_size(n).replace(' ', '')}.bin" for role, n in sizes.items()}
    write_seconds = 0.0
    block = 16 * MiB
    for role, size in sizes.items():
        with open(data_dir / names[role], "wb") as out:
            left = size
            while left > 0:
                chunk = os.urandom(min(block, left))
                started = time.perf_counter()
                out.write(chunk)
                write_seconds += time.perf_counter() - started if role == "large" else 0.0
                left -= len(chunk)
            started = time.perf_counter()
            out.flush()
            os.fsync(out.fileno())
            write_seconds += time.perf_counter() - started if role == "large" else 0.0
    # Readable by nginx's unprivileged worker too.
    os.chmod(workdir, 0o755)
    os.chmod(data_dir, 0o755)
    started = time.perf_counter()
    digest = hashlib.sha256()
    for view in read_chunks(data_dir / names["large"]):
        digest.update(view)
    hash_seconds = time.perf_counter() - started
    return TestFiles(
        data_dir,
        names,
        sizes,
        digest.hexdigest(),
        scale.large / write_seconds / 1e9,
        scale.large / hash_seconds / 1e9,
    )


def read_chunks(path: Path, size: int = 8 * MiB) -> Iterator[memoryview]:
    buf = bytearray(size)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            yield view[:n]


def warm(path: Path) -> None:
    """Read the whole file, so the timed phase reads from the page cache, not the disk."""
    for _ in read_chunks(path):
        pass


def link_root(files: TestFiles, root: Path) -> None:
    """A storage root for one artifactd holding hard links to the test files (same pages)."""
    root.mkdir()
    for name in files.names.values():
        os.link(files.data_dir / name, root / name)
