"""Listing one directory of the storage root (the whole tree is walked only by reconcile.py).
Internal state (`.artifactd/`) and links leaving the root are never listed. Blocking."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from artifactd.errors import NotDirectoryError, NotFoundError
from artifactd.paths import INTERNAL_DIR
from artifactd.store.base import DirEntry
from artifactd.store.filesystem.confinement import resolve_inside
from artifactd.store.filesystem.metadb import MetadataDB, VersionRow


def list_directory(root: Path, db: MetadataDB, path: str) -> list[DirEntry]:
    """Directories first, then files, each by name; expired files left out. Reads this
    directory alone: its entries, and the rows of its files (never those further down)."""
    os_path = resolve_inside(root, path)
    prefix = f"{path}/" if path else ""
    try:
        scan = os.scandir(os_path)
    except FileNotFoundError as exc:
        raise NotFoundError(path) from exc
    except NotADirectoryError as exc:
        raise NotDirectoryError(path) from exc
    with scan:
        items = [item for item in scan if path or item.name != INTERNAL_DIR]
    rows = {row.path: row for row in db.rows_for_paths([prefix + i.name for i in items])}
    now = time.time()
    entries: list[DirEntry] = []
    for item in items:
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
