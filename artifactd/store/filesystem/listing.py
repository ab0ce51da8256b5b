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
    return list_directory_page(root, db, path, None, None)[0]


def list_directory_page(
    root: Path, db: MetadataDB, path: str, after: str | None, limit: int | None
) -> tuple[list[DirEntry], bool]:
    """Up to `limit` entries (None: all) of `list_directory` after the `listing_key`
    `after`, and whether more follow. The directory's names are read and ordered (cheap:
    no stat but for links); only the entries of the page are stated and looked up."""
    os_path = resolve_inside(root, path)
    prefix = f"{path}/" if path else ""
    try:
        scan = os.scandir(os_path)
    except FileNotFoundError as exc:
        raise NotFoundError(path) from exc
    except NotADirectoryError as exc:
        raise NotDirectoryError(path) from exc
    with scan:
        keyed = sorted((_key(item), item) for item in scan if path or item.name != INTERNAL_DIR)
    items = [item for key, item in keyed if after is None or key > after]
    now = time.time()
    entries: list[DirEntry] = []
    chunk = len(items) if limit is None else limit + 1
    for start in range(0, len(items), max(chunk, 1)):
        batch = items[start : start + chunk]
        rows = {row.path: row for row in db.rows_for_paths([prefix + i.name for i in batch])}
        for item in batch:
            entry = _dir_entry(root, prefix + item.name, item, rows, now)
            if entry is not None:
                entries.append(entry)
        if limit is not None and len(entries) > limit:
            return entries[:limit], True
    return entries, False


def _key(item: os.DirEntry[str]) -> str:
    """`listing_key` from the directory entry alone (a link is judged by its target)."""
    try:
        is_dir = item.is_dir()
    except OSError:
        is_dir = False
    return ("d/" if is_dir else "f/") + item.name


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
