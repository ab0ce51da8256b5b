"""Walking the storage root: one directory for a listing, the whole tree for maintenance.
Internal state (`.artifactd/`) and links leaving the root are never listed. Blocking."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from artifactd.errors import NotDirectoryError, NotFoundError
from artifactd.paths import INTERNAL_DIR
from artifactd.store.base import DirEntry
from artifactd.store.filesystem.confinement import resolve_inside
from artifactd.store.filesystem.metadb import MetadataDB, VersionRow


def list_directory(root: Path, db: MetadataDB, path: str) -> list[DirEntry]:
    """Directories first, then files, each by name; expired files left out."""
    os_path = resolve_inside(root, path)
    rows = {row.path: row for row in db.rows_under(path)}
    prefix = f"{path}/" if path else ""
    now = time.time()
    entries: list[DirEntry] = []
    try:
        scan = os.scandir(os_path)
    except FileNotFoundError as exc:
        raise NotFoundError(path) from exc
    except NotADirectoryError as exc:
        raise NotDirectoryError(path) from exc
    with scan:
        for item in scan:
            if not path and item.name == INTERNAL_DIR:
                continue
            entry = _dir_entry(root, prefix + item.name, item, rows, now)
            if entry is not None:
                entries.append(entry)
    entries.sort(key=lambda e: (e.type != "dir", e.name))
    return entries


def _dir_entry(
    root: Path, child: str, item: os.DirEntry[str], rows: dict[str, VersionRow], now: float
) -> DirEntry | None:
    try:
        if item.is_symlink():
            resolve_inside(root, child)  # hide links that leave the root
        st = item.stat()
    except (OSError, ValueError, Exception):  # broken or escaping link
        return None
    if stat.S_ISDIR(st.st_mode):
        return DirEntry(item.name, "dir", None, st.st_mtime)
    if not stat.S_ISREG(st.st_mode):
        return None
    row = rows.get(child)
    if row is not None and row.matches(st.st_ino, st.st_size, st.st_mtime_ns):
        if row.expires_at is not None and row.expires_at <= now:
            return None
        return DirEntry(item.name, "file", st.st_size, st.st_mtime, row.sha256, row.expires_at)
    return DirEntry(item.name, "file", st.st_size, st.st_mtime)


def walk_files(root: Path, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    """(path, stat) of every regular file whose path starts with `prefix`, in path order."""
    found: list[tuple[str, os.stat_result]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        if not rel_dir:
            dirnames[:] = [d for d in dirnames if d != INTERNAL_DIR]
        dirnames.sort()
        for name in sorted(filenames):
            path = f"{rel_dir}/{name}" if rel_dir else name
            if not path.startswith(prefix):
                continue
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((path, st))
    found.sort(key=lambda item: item[0])
    return iter(found)
