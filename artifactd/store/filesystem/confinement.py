"""Keeping filesystem access inside the storage root, symlinks included."""

from __future__ import annotations

import os
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
    real = os.path.realpath(os.path.join(root_str, path), strict=False)
    if real != root_str and not real.startswith(root_str + os.sep):
        raise InvalidPathError("path resolves outside the storage root")
    internal = os.path.join(root_str, INTERNAL_DIR)
    if real == internal or real.startswith(internal + os.sep):
        raise NotFoundError(path)
    return real
