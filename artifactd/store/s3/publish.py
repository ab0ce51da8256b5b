"""Conditional writes: how a commit or delete replaces exactly the version `require` judged.

The version now at the path is read (HEAD), judged by `require`, and the write that
replaces or removes it carries If-Match on its ETag (If-None-Match: * when there is none).
When another node got there first the write fails with 412 and the caller starts over
with a fresh HEAD, at most COMMIT_ATTEMPTS times (docs/storage-s3.md).

A commit that creates the key (nothing there) first checks that the path is no directory
and that no parent is a file, in one round trip; parents under which this node committed
a few seconds ago are not looked at again (`KnownDirectories`). A creation the store refuses
though nothing is there removes the empty directories SeaweedFS keeps at the path
(`remove_empty_directories`) and tries once more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from artifactd.errors import ArtifactdError, ConflictError, IsDirectoryError
from artifactd.store.base import ArtifactInfo, Requirement
from artifactd.store.s3.bucket import ClientError, code, is_missing, is_precondition_failed
from artifactd.store.s3.objects import ObjectMeta, Objects, Seen

log = logging.getLogger("artifactd.store.s3")

COMMIT_ATTEMPTS = 8  # conditional commits/deletes retried this often under contention
DIRECTORIES_TRUSTED_SECONDS = 5.0
DIRECTORIES_KEPT = 10_000

# What `current_for_write` found: the object (expired or not), its info unless expired
# (after `require` accepted it), and the write condition that holds only while it stays.
WriteTarget = tuple[ObjectMeta | None, ArtifactInfo | None, dict[str, str]]
# Turns an object into the ArtifactInfo `require` judges.
Describe = Callable[[str, ObjectMeta], ArtifactInfo]


def parents_of(path: str) -> list[str]:
    """`a`, `a/b` for `a/b/c`: the directories a key at `path` lies in."""
    segments = path.split("/")
    return ["/".join(segments[:i]) for i in range(1, len(segments))]


class KnownDirectories:
    """Paths under which this node committed an object less than `trusted_seconds` ago.

    Such a path was a directory then (our key lay under it), and stays one while any key
    does: artifactd creates no file where a directory is (the is-a-directory check before
    every creation). For it to have become a file meanwhile, every key under it must have
    been deleted and a file put there, all within those seconds, by another node (this
    node's own commits and deletes update the set). That is a race between that node's
    writes and this upload, and its outcome, a path that is both a file and a directory,
    is one any two writers racing within one round trip can reach without the set: S3
    cannot check one key and write another atomically. Both stay readable and nothing is
    lost (`open` serves the file, listings show both), so a stale entry costs no more than
    such a race does; the set only stretches its window from one round trip to a few
    seconds, and saves a HEAD per parent for every upload into a busy directory."""

    def __init__(
        self,
        trusted_seconds: float = DIRECTORIES_TRUSTED_SECONDS,
        kept: int = DIRECTORIES_KEPT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.trusted_seconds = trusted_seconds
        self.kept = kept
        self.clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # path -> when, oldest first

    def unknown(self, paths: list[str]) -> list[str]:
        """Those of `paths` not known to be directories right now."""
        oldest = self.clock() - self.trusted_seconds
        return [p for p in paths if self._seen.get(p, oldest) <= oldest]

    def committed(self, path: str) -> None:
        """An object was just committed at `path`: its parents are directories, and
        `path` itself is a file."""
        now = self.clock()
        self._seen.pop(path, None)
        for parent in parents_of(path):
            self._seen[parent] = now
            self._seen.move_to_end(parent)
        while len(self._seen) > self.kept:
            self._seen.popitem(last=False)

    def removed(self, path: str) -> None:
        """The object at `path` was deleted: the directories it lay in may be empty now."""
        for parent in parents_of(path):
            self._seen.pop(parent, None)


def judged(
    path: str, meta: ObjectMeta | None, require: Requirement | None, describe: Describe
) -> WriteTarget:
    """`meta` (the object at `path`, or None) judged by `require`, with the write condition
    that holds only while it stays there."""
    current = None if meta is None or meta.is_expired() else describe(path, meta)
    if require is not None:
        require(current)
    condition = {"IfMatch": f'"{meta.etag}"'} if meta else {"IfNoneMatch": "*"}
    return meta, current, condition


class ConditionalWrites:
    """The checks and conditional requests that commits (upload.py) and deletes share."""

    def __init__(self, objects: Objects) -> None:
        self.objects = objects
        self.bucket = objects.bucket
        self.directories = KnownDirectories()
        self._conditional_delete = True

    async def check_creatable(self, path: str) -> None:
        """IsDirectoryError if keys lie under `path/`; ConflictError if an artifact sits
        where a parent directory of `path` would be. One round trip: the listing and the
        parents' HEADs go at once, and parents known to be directories are skipped."""
        layout = self.objects.layout
        parents = self.directories.unknown(parents_of(path))
        is_dir, *found = await asyncio.gather(
            self.objects.is_dir(path), *(self.objects.head(layout.key(p)) for p in parents)
        )
        if is_dir:
            raise IsDirectoryError(path)
        if any(meta is not None for meta in found):
            raise ConflictError(f"a parent of {path} is a file")

    async def current_for_write(
        self, path: str, require: Requirement | None, describe: Describe, *, creating: bool
    ) -> WriteTarget:
        """The object now at `path`, its info unless expired (after `require` accepted it),
        and the write condition that holds only while it stays there.

        With nothing there, IsDirectoryError for a directory and, when `creating`, the
        rest of `check_creatable`. An object there already lies in directories, so a
        commit replacing it creates none and needs no check: only its HEAD."""
        meta = await self.objects.head(self.objects.layout.key(path))
        if meta is None:
            if creating:
                await self.check_creatable(path)
            elif await self.objects.is_dir(path):
                raise IsDirectoryError(path)
        return judged(path, meta, require, describe)

    async def guess_for_write(
        self, path: str, seen: Seen, require: Requirement | None, describe: Describe
    ) -> WriteTarget | None:
        """`current_for_write` of a commit, with what a recent HEAD saw (`Objects.seen`)
        standing in for its own HEAD; None when `require` refuses that version.

        Safe because the write this leads to is conditional on that very version (If-Match
        on its ETag, If-None-Match: * when none): had the key changed since, the store
        refuses the write (412) and the commit starts over with a HEAD of its own, as when
        another node writes between a HEAD and a write. A guess never decides a refusal,
        which no write would check: the caller looks again then (and when the guess would
        keep the object as it is, writing nothing). The checks before a creation are made
        now, as ever: they concern other keys, which no condition covers."""
        if seen.meta is None:
            await self.check_creatable(path)
        try:
            return judged(path, seen.meta, require, describe)
        except ArtifactdError:
            return None

    async def remove_empty_directories(self, path: str) -> bool:
        """Remove `path` and the directories below it that hold no key, deepest first, as
        the store keeps them: True if no key was met under `path/` (so none is left).

        SeaweedFS keeps a directory after the last key under it is deleted (its filer
        removes emptied folders only later, in `weed/filer/empty_folder_cleanup/
        empty_folder_cleaner.go`), lists it as a common prefix, and refuses If-None-Match: *
        on its key (`validateConditionalHeaders` in `weed/s3api/s3api_object_handlers_put.go`
        finds the directory entry), so a file cannot be created where a directory was.
        DeleteObject of `<dir>/` removes it (`deleteDirectoryMarker` in
        `weed/s3api/s3api_directory_marker.go`): the filer delete is not recursive, and a
        directory a key was written into meanwhile is only demoted to an implicit one,
        its keys kept (`deleteObjectEntry` in `weed/s3api/filer_util.go`). On stores with
        no directories (AWS S3, MinIO) it is a harmless 204 for an absent key, or deletes
        the empty marker object an S3 console or MKCOL made there. `<dir>/` is never an
        artifact's key (`Layout.path_of`), so on any store this removes no bytes: at worst
        a marker made in the round trip between the listing and the delete."""
        return await self._remove_empty_prefix(f"{self.objects.layout.key(path)}/")

    async def _remove_empty_prefix(self, dir_prefix: str) -> bool:
        """`remove_empty_directories` by key prefix (`<key>/`), one listing per directory,
        one directory at a time: such leftovers are rare, and may be many."""
        below: list[str] = []
        async for page in self.bucket.list_pages(dir_prefix, delimiter="/"):
            if any(item["Key"] != dir_prefix for item in page.get("Contents", [])):
                return False
            below += [common["Prefix"] for common in page.get("CommonPrefixes", [])]
        for prefix in below:  # each longer than dir_prefix: the walk ends
            if not await self._remove_empty_prefix(prefix):
                return False
        # A failed delete shows again as the creation's 412, which then answers 409.
        await self.bucket.delete_quietly(dir_prefix)
        return True

    async def delete_version(self, meta: ObjectMeta) -> bool:
        """Delete the object if it still is `meta`'s version; False if it changed.

        A store that refuses conditional deletes (NotImplemented) gets plain ones from then
        on: the HEAD just before is the only check left (docs/storage-s3.md)."""
        condition = {"IfMatch": f'"{meta.etag}"'} if self._conditional_delete else {}
        try:
            await self.bucket.request("delete_object", Key=meta.key, **condition)
        except ClientError as exc:
            if is_precondition_failed(exc) or is_missing(exc):
                return False
            if code(exc) != "NotImplemented" or not condition:
                raise
            log.warning("this S3 store refuses conditional deletes; deleting after a HEAD")
            self._conditional_delete = False
            await self.bucket.request("delete_object", Key=meta.key)
        return True
