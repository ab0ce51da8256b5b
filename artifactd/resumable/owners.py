"""The cap on open upload resources per owner (a token's name; every request without a
token is one owner, "anonymous"), checked where each protocol creates a resource.

Each owner has a folder `<uploads>/owners/<key>/` with one empty marker `<id>.<expiry>` per
resource it created. A creation counts the markers whose resource is still open (its state
file exists and the expiry in the marker's name is ahead) and prunes the others, under an
flock on the folder so concurrent creations (across --workers too) cannot both take the last
place. The cost is one scandir of that owner's folder and one stat per marker: at most the
cap plus one markers, because every creation prunes the finished ones first (about 1-2 ms at
the default cap of 1000), never a scan of every owner's uploads.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from artifactd.errors import TooManyUploadsError
from artifactd.resumable.resources import UploadResource, UploadResources

OWNERS_DIR = "owners"
ANONYMOUS = "anonymous"
_MARKER = re.compile(r"(?P<id>[A-Za-z0-9_-]{32})\.(?P<expiry>[0-9]{1,12})")


def owner_folder(resources: UploadResources, owner: str | None) -> Path:
    """The owner's marker folder; token names are hashed, so any name is a safe file name
    and no two owners share one."""
    key = ANONYMOUS if owner is None else hashlib.sha256(owner.encode()).hexdigest()[:32]
    return resources.dir / OWNERS_DIR / key


def _open_count(resources: UploadResources, folder: Path, now: float) -> int:
    """Markers of open resources; the others (completed, deleted, expired) are removed."""
    count = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            match = _MARKER.fullmatch(entry.name)
            if match is None:
                continue
            state = resources.dir / f"{match['id']}.json"
            if int(match["expiry"]) > now and state.exists():
                count += 1
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
    return count


def create_within_cap(
    resources: UploadResources,
    owner: str | None,
    cap: int,
    create: Callable[[], UploadResource],
) -> UploadResource:
    """`create()` the owner's next resource, or TooManyUploadsError when `cap` are open."""
    folder = owner_folder(resources, owner)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held for a count and a creation: milliseconds
        if _open_count(resources, folder, time.time()) >= cap:
            raise TooManyUploadsError(
                f"{cap} uploads are open already; finish or delete one, or wait for expiry"
            )
        resource = create()
        # The expiry rounded up, so a marker never outlives its resource by design (the
        # state file's existence is checked too).
        (folder / f"{resource.id}.{int(resource.expires_at) + 1}").touch()
        return resource
    finally:
        os.close(fd)


def prune_markers(resources: UploadResources) -> int:
    """Markers of finished resources in every owner's folder (owners that stopped creating
    keep theirs until this pass of the evictor); returns how many went."""
    root = resources.dir / OWNERS_DIR
    if not root.is_dir():
        return 0
    removed, now = 0, time.time()
    for folder in root.iterdir():
        if not folder.is_dir():
            continue
        before = sum(1 for name in os.listdir(folder) if _MARKER.fullmatch(name))
        removed += before - _open_count(resources, folder, now)
    return removed
