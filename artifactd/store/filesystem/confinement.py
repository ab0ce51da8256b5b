"""Keeping filesystem access inside the storage root, symlinks included."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import NamedTuple

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
        real = _real_inside(root_str, path)
        _refuse_internal(root_str, real, path)
    else:
        _refuse_plain_internal(path)
    return real


def _real_inside(root_str: str, path: str) -> str:
    """realpath's full walk (links, `.`/`..`), refusing a target outside the root."""
    real = os.path.realpath(os.path.join(root_str, path), strict=False)
    if real != root_str and not real.startswith(root_str + os.sep):
        raise InvalidPathError("path resolves outside the storage root")
    return real


def _refuse_plain_internal(path: str) -> None:
    """`_refuse_internal` for a plain path (`root/path` as it is): its own names tell."""
    if path.startswith(_INTERNAL_PREFIX) or path == INTERNAL_DIR:
        raise NotFoundError(path)


def _refuse_internal(root_str: str, real: str, path: str) -> None:
    internal = os.path.join(root_str, INTERNAL_DIR)
    if real == internal or real.startswith(internal + os.sep):
        raise NotFoundError(path)


class Look(NamedTuple):
    """What `look_inside` found at an artifact's path."""

    os_path: str  # as resolve_inside answers
    st: os.stat_result | None  # what is there, links followed; None: nothing
    parent_ready: bool  # its parent is known to be a directory (nothing to make)


def look_inside(root: Path, path: str, plain_dirs: set[str] | None = None) -> Look:
    """`resolve_inside`, and what is at the path, from the same walk: where no link lies on
    the way, the lstat of the last component is its stat (one system call fewer for each
    look at a target a writer makes after resolving it). Same errors as resolve_inside.

    `plain_dirs` (the caller's, for one batch under the write lock, as `stat_inside`'s):
    parent directories found plain (no link on their way) by an earlier look, whose
    children then cost one lstat; the ones this look finds are added."""
    root_str = str(root)
    if not path:
        return Look(root_str, os.stat(root_str), False)
    parent, _, name = path.rpartition("/")
    if plain_dirs is not None and parent in plain_dirs and name not in _UNPLAIN_NAMES:
        _refuse_plain_internal(path)
        joined = f"{root_str}/{path}"
        try:
            st = os.lstat(joined)
        except OSError as exc:
            return Look(joined, None, exc.errno == errno.ENOENT)
        if not stat.S_ISLNK(st.st_mode):
            return Look(joined, st, True)
    walked = plain_walk(root_str, path)
    if walked is not None:
        _refuse_plain_internal(path)
        real, st_found, parent_ready = walked
        if plain_dirs is not None and parent_ready and parent:
            plain_dirs.add(parent)
        return Look(real, st_found, parent_ready)
    real = _real_inside(root_str, path)
    _refuse_internal(root_str, real, path)
    try:
        return Look(real, os.stat(real), True)
    except OSError:
        return Look(real, None, False)  # the writer looks at (and makes) the parents


def plain_join(root_str: str, path: str) -> str | None:
    """`root_str/path` when no link lies on its way below the root, which is what
    os.path.realpath would answer (the root is real already, so its own components, which
    realpath would lstat one by one, need no look); None when a link or a `.`/`..` segment
    needs realpath's full walk. Like realpath, the first component that cannot be looked at
    (absent, below a file) ends the walk: nothing under it is a link."""
    walked = plain_walk(root_str, path)
    return None if walked is None else walked[0]


def plain_walk(root_str: str, path: str) -> tuple[str, os.stat_result | None, bool] | None:
    """`plain_join`, with what its walk saw: the last component's lstat (its stat, as no
    link lies on the way; None if absent or not looked at) and whether its parent is known
    to be a directory (the walk reached the last component, or the last is absent from an
    existing directory)."""
    if not path:
        return root_str, None, False
    joined = root_str
    names = path.split("/")
    last = len(names) - 1
    for depth, name in enumerate(names):
        if name in _UNPLAIN_NAMES:
            return None
        joined = f"{joined}/{name}"
        try:
            st = os.lstat(joined)
        except OSError as exc:
            rest = names[depth + 1 :]
            if any(n in _UNPLAIN_NAMES for n in rest):
                return None
            # ENOENT at the last component: its parent, looked at just before (or the
            # root), is a directory; ENOTDIR means it is not.
            parent_ready = depth == last and exc.errno == errno.ENOENT
            return "/".join([joined, *rest]), None, parent_ready
        if stat.S_ISLNK(st.st_mode):
            return None
    return joined, st, True


_INTERNAL_PREFIX = INTERNAL_DIR + "/"

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
