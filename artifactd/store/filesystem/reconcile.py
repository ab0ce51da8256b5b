"""Reconciling the metadata index with the tree: files placed by hand get a row, rows of
files removed by hand go. Both halves stream (os.scandir, keyset pages of the index) in
bounded batches, so memory stays flat however many files the root holds. Blocking.

Rows are written and deleted under the root's write lock, after stating the file again:
a commit, delete or eviction between the walk and the write is never undone (a row for a
file just evicted would count bytes no longer there).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from artifactd.errors import ArtifactdError
from artifactd.paths import INTERNAL_DIR
from artifactd.store.filesystem.confinement import resolve_inside, stat_inside
from artifactd.store.filesystem.digests import found_row
from artifactd.store.filesystem.locks import WriteLock
from artifactd.store.filesystem.metadb import MetadataDB, VersionRow

BATCH = 1000


@dataclass
class Reconciliation:
    files: int = 0  # regular files seen
    recorded: int = 0  # rows added for files placed or changed by hand
    forgotten: int = 0  # rows of files removed or replaced by hand


def walk_files(root: Path, directory: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """(path, stat) of every regular file under `directory` ('' = the root), streamed: one
    directory's entries at a time. Internal state is skipped and links to directories are
    not followed (as os.walk does); links to files are stated as their target."""
    pending = [directory]
    while pending:
        current = pending.pop()
        try:
            scan = os.scandir(resolve_inside(root, current) if current else root)
        except (OSError, ArtifactdError):
            continue
        prefix = f"{current}/" if current else ""
        with scan:
            for item in scan:
                if not current and item.name == INTERNAL_DIR:
                    continue
                path = prefix + item.name
                try:
                    if item.is_dir(follow_symlinks=False):
                        pending.append(path)
                        continue
                    if item.is_symlink():
                        resolve_inside(root, path)  # a link leaving the root is not ours
                    st = item.stat()
                except (OSError, ArtifactdError):
                    continue
                if stat.S_ISREG(st.st_mode):
                    yield path, st


def reconcile(
    root: Path,
    db: MetadataDB,
    lock: WriteLock,
    directory: str = "",
    forgot: Callable[[list[str]], None] = lambda paths: None,
    writes: Callable[[], object] | None = None,
) -> Reconciliation:
    """Record the files under `directory` that no row describes, then forget the rows
    under it that describe no file there (`forgot` is told their paths under the write
    lock after each batch of them: see the store's row generation).

    `writes`: what changes with every write to the root by any process (the store's
    generation counters). A whole-root walk that found a file for every row, with no write
    meanwhile, skips the second half: no row can describe a removed file, and reading and
    stating every row again (half a pass's CPU, about 5 µs a row) would find none."""
    report = Reconciliation()
    before = None if writes is None or directory else writes()
    described = 0  # rows known to describe a file the walk saw
    batch: list[tuple[str, os.stat_result]] = []
    for found in walk_files(root, directory):
        report.files += 1
        batch.append(found)
        if len(batch) == BATCH:
            recorded, seen = _record(root, db, lock, batch)
            report.recorded, described = report.recorded + recorded, described + seen
            batch = []
    recorded, seen = _record(root, db, lock, batch)
    report.recorded, described = report.recorded + recorded, described + seen
    unchanged = writes is not None and before is not None and writes() == before
    if unchanged and db.row_count() == described:
        return report
    report.forgotten = _sweep(root, db, lock, f"{directory}/" if directory else "", forgot)
    return report


def _record(
    root: Path, db: MetadataDB, lock: WriteLock, batch: list[tuple[str, os.stat_result]]
) -> tuple[int, int]:
    """Rows for the files of `batch` that none describes: (rows recorded, files of the
    batch a row describes now, by path and inode)."""
    if not batch:
        return 0, 0
    known = set(db.identities_for_paths([p for p, _ in batch]))
    described = {(path, ino) for path, ino, _, _ in known}
    seen = sum((path, st.st_ino) in described for path, st in batch)
    missing = [
        (path, st)
        for path, st in batch
        if (path, st.st_ino, st.st_size, st.st_mtime_ns) not in known
    ]
    if not missing:
        return 0, seen
    plain: set[str] = set()
    with lock.held():
        new = [found_row(path, st) for path, st in missing if _still(root, path, st, plain)]
        db.record_found_versions(new)
    return len(new), seen + sum((r.path, r.ino) not in described for r in new)


def _sweep(
    root: Path, db: MetadataDB, lock: WriteLock, prefix: str, forgot: Callable[[list[str]], None]
) -> int:
    forgotten = 0
    after: str | None = None
    while page := db.page(prefix, after, BATCH):
        after = page[-1].path
        page += [r for r in db.rows_for_paths([after]) if r not in page]  # straddling
        plain: set[str] = set()
        stale = [row for row in page if not _describes_file(root, row, plain)]
        if stale:
            with lock.held():  # judged again: a commit may have just made a row current
                gone = [(r.path, r.ino) for r in stale if not _describes_file(root, r, plain)]
                # Only rows this pass deleted count: another process's delete or eviction
                # may have removed them since the page was read, and bumped the generation
                # itself. Bumping again would empty every read index and hot cache for
                # nothing, and could make a read that just learnt a row learn it again.
                deleted = db.delete_versions(gone)
                if deleted:
                    forgot([path for path, _ in gone])
            forgotten += deleted
    return forgotten


def _describes_file(root: Path, row: VersionRow, plain_dirs: set[str]) -> bool:
    """Whether the row's inode is the file at its path now (its bytes may have changed in
    place: the walk records the new size, and the row stays)."""
    try:
        return stat_inside(root, row.path, plain_dirs).st_ino == row.ino
    except (OSError, ArtifactdError):
        return False


def _still(root: Path, path: str, st: os.stat_result, plain_dirs: set[str]) -> bool:
    try:
        now = stat_inside(root, path, plain_dirs)
    except (OSError, ArtifactdError):
        return False
    return (now.st_ino, now.st_size, now.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
