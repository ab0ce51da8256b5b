"""Keeping filesystem access inside the storage root, symlinks included."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from artifactd.errors import InvalidPathError, NotFoundError
from artifactd.paths import INTERNAL_DIR


def resolve_inside(root: Path, path: str) -> str:
    """The real OS path for artifact `path`, refusing anything outside `root`.

    `root` must already be a real path. Symlinks are followed as far as they exist; a target
    outside the root is an InvalidPathError, a target inside the internal state directory is
    NotFoundError (internal state is never reachable).
    """
    root_str = str(root)
    real = plain_join(root_str, path)
    if real is None:
        real = os.path.realpath(os.path.join(root_str, path), strict=False)
        if real != root_str and not real.startswith(root_str + os.sep):
            raise InvalidPathError("path resolves outside the storage root")
    internal = os.path.join(root_str, INTERNAL_DIR)
    if real == internal or real.startswith(internal + os.sep):
        raise NotFoundError(path)
    return real


def plain_join(root_str: str, path: str) -> str | None:
    """`root_str/path` when no link lies on its way below the root, which is what
    os.path.realpath would answer (the root is real already, so its own components, which
    realpath would lstat one by one, need no look); None when a link or a `.`/`..` segment
    needs realpath's full walk. Like realpath, the first component that cannot be looked at
    (absent, below a file) ends the walk: nothing under it is a link."""
    if not path:
        return root_str
    joined = root_str
    names = path.split("/")
    for depth, name in enumerate(names):
        if name in _UNPLAIN_NAMES:
            return None
        joined = f"{joined}/{name}"
        try:
            mode = os.lstat(joined).st_mode
        except OSError:
            rest = names[depth + 1 :]
            if any(n in _UNPLAIN_NAMES for n in rest):
                return None
            return "/".join([joined, *rest])
        if stat.S_ISLNK(mode):
            return None
    return joined


# Segments realpath gives a meaning (artifact paths are normalised and have none of them).
_UNPLAIN_NAMES = frozenset({"", ".", ".."})


def stat_inside(root: Path, path: str, plain_dirs: set[str]) -> os.stat_result:
    """`os.stat` of `resolve_inside(root, path)` for many paths at the price of about one
    lstat each: a parent directory is resolved once and remembered in `plain_dirs` (the
    caller's, for one batch) when no link lies on its way, and only a file that is itself a
    link is resolved in full. Same errors as resolve_inside, and OSError."""
    parent = path.rpartition("/")[0]
    joined = os.path.join(str(root), path)
    if parent and parent not in plain_dirs:
        if resolve_inside(root, parent) != os.path.join(str(root), parent):
            return os.stat(resolve_inside(root, path))  # links on the way: judged in full
        plain_dirs.add(parent)
    st = os.lstat(joined)
    if stat.S_ISLNK(st.st_mode):
        return os.stat(resolve_inside(root, path))
    return st


def resolve_in_batch(root: Path, path: str, plain_dirs: set[str]) -> str:
    """`resolve_inside` for one of many paths, at the price of about one lstat: as
    `stat_inside`, a parent directory is resolved once per batch (`plain_dirs`)."""
    parent = path.rpartition("/")[0]
    if parent and parent not in plain_dirs:
        if resolve_inside(root, parent) != os.path.join(str(root), parent):
            return resolve_inside(root, path)
        plain_dirs.add(parent)
    joined = os.path.join(str(root), path)
    if os.path.islink(joined):
        return resolve_inside(root, path)
    if path == INTERNAL_DIR:
        raise NotFoundError(path)
    return joined
