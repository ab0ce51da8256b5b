"""An in-memory reference backend: the storage contract in its simplest form, for tests."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace

from artifactd.errors import (
    ConflictError,
    IsDirectoryError,
    NotDirectoryError,
    NotFoundError,
)
from artifactd.http.mediatypes import guess_content_type
from artifactd.store.base import (
    ArtifactInfo,
    ArtifactReader,
    DirEntry,
    Requirement,
    Store,
    Upload,
    Verification,
)
from artifactd.store.readers import MemoryReader
from artifactd.store.uploads import UploadBase, check_digest


class MemoryStore(Store):
    """Artifacts in a dict; directories exist implicitly as path prefixes, and empty ones
    made by `make_dir` as names in a set."""

    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, ArtifactInfo]] = {}
        self._dirs: set[str] = set()
        self._versions = 0

    def _live(self, path: str) -> tuple[bytes, ArtifactInfo]:
        found = self._objects.get(path)
        if found is None or found[1].is_expired():
            if self._is_dir(path):
                raise IsDirectoryError(path)
            raise NotFoundError(path)
        return found

    def _is_dir(self, path: str) -> bool:
        prefix = f"{path}/" if path else ""
        return (
            not path
            or path in self._dirs
            or any(p.startswith(prefix) for p in (*self._objects, *self._dirs))
        )

    async def open(self, path: str) -> ArtifactReader:
        data, info = self._live(path)
        return MemoryReader(data, info)

    def open_now(self, path: str) -> ArtifactReader | None:
        found = self._objects.get(path)
        if found is None or found[1].is_expired():
            return None
        return MemoryReader(*found)

    async def info(self, path: str) -> ArtifactInfo:
        return self._live(path)[1]

    async def list_dir(self, path: str) -> list[DirEntry]:
        if path in self._objects:
            raise NotDirectoryError(path)
        prefix = f"{path}/" if path else ""
        files: dict[str, DirEntry] = {}
        dirs: dict[str, DirEntry] = {}
        for child, (_, info) in self._objects.items():
            if not child.startswith(prefix) or info.is_expired():
                continue
            name, _, rest = child[len(prefix) :].partition("/")
            if rest:
                dirs.setdefault(name, DirEntry(name, "dir", None, info.modified_at))
            else:
                files[name] = DirEntry(
                    name, "file", info.size, info.modified_at, info.sha256, info.expires_at
                )
        for made in self._dirs:
            if made.startswith(prefix):
                name = made[len(prefix) :].partition("/")[0]
                dirs.setdefault(name, DirEntry(name, "dir", None, 0.0))
        if path and not files and not dirs and path not in self._dirs:
            raise NotFoundError(path)
        return sorted(dirs.values(), key=lambda e: e.name) + sorted(
            files.values(), key=lambda e: e.name
        )

    async def make_dir(self, path: str) -> bool:
        if self._is_dir(path) or self._current(path) is not None:
            return False
        self._objects.pop(path, None)  # an expired file: gone as far as anyone can tell
        parent = path.rpartition("/")[0]
        if parent and self._current_or_dir(parent) is not None:
            raise NotDirectoryError(parent)
        if parent and not self._is_dir(parent):
            raise NotFoundError(parent)
        self._dirs.add(path)
        return True

    async def remove_dir(self, path: str) -> bool:
        prefix = f"{path}/" if path else ""
        if path in self._objects or any(p.startswith(prefix) for p in self._objects):
            return False
        self._dirs = {d for d in self._dirs if d != path and not d.startswith(prefix)}
        return True

    def _current_or_dir(self, path: str) -> ArtifactInfo | None:
        """The live file at `path`; None for a directory or nothing."""
        try:
            return self._current(path)
        except IsDirectoryError:
            return None

    async def begin_upload(
        self, path: str, *, content_type: str | None = None, expires_at: float | None = None
    ) -> Upload:
        if self._is_dir(path) and path not in self._objects:
            raise IsDirectoryError(path)
        return MemoryUpload(self, path, content_type, expires_at)

    def _current(self, path: str) -> ArtifactInfo | None:
        found = self._objects.get(path)
        if found is None or found[1].is_expired():
            if self._is_dir(path) and path:
                raise IsDirectoryError(path)
            return None
        return found[1]

    def _commit(
        self, upload: MemoryUpload, expected_sha256: str | None, require: Requirement | None
    ) -> tuple[ArtifactInfo, bool]:
        data = bytes(upload.buffer)
        sha256 = hashlib.sha256(data).hexdigest()
        check_digest(expected_sha256, sha256)
        current = self._current(upload.path)
        if require is not None:
            require(current)
        content_type = upload.content_type or guess_content_type(upload.path)
        if current is not None and (current.sha256, current.content_type) == (
            sha256,
            content_type,
        ):
            kept = replace(current, expires_at=upload.expires_at)
            self._objects[upload.path] = (self._objects[upload.path][0], kept)
            upload.kept_current = True
            return kept, True
        parts = upload.path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in self._objects:
                raise ConflictError(f"a parent of {upload.path} is a file")
        self._versions += 1
        now = time.time()
        info = ArtifactInfo(
            path=upload.path,
            size=len(data),
            content_type=content_type,
            modified_at=now,
            created_at=now,
            sha256=sha256,
            expires_at=upload.expires_at,
            last_accessed=now,
            version=str(self._versions),
        )
        self._objects[upload.path] = (data, info)
        return info, current is not None

    async def delete(self, path: str, *, require: Requirement | None = None) -> ArtifactInfo:
        current = self._current(path)
        if require is not None:
            require(current)
        if current is None:
            raise NotFoundError(path)
        del self._objects[path]
        return current

    async def verify(self) -> AsyncIterator[Verification]:
        for path in sorted(self._objects):
            data, info = self._objects[path]
            if info.sha256:
                actual = hashlib.sha256(data).hexdigest()
                yield Verification(path, info.size, info.sha256, actual)

    async def evict(self, info: ArtifactInfo) -> bool:
        found = self._objects.get(info.path)
        if found is None or found[1].version != info.version:
            return False
        del self._objects[info.path]
        return True

    async def iter_artifacts(
        self, prefix: str = "", *, include_expired: bool = False, after: str | None = None
    ) -> AsyncIterator[ArtifactInfo]:
        for path in sorted(self._objects):
            info = self._objects[path][1]
            if after is not None and path <= after:
                continue
            if path.startswith(prefix) and (include_expired or not info.is_expired()):
                yield info

    async def record_access(self, path: str) -> None:
        found = self._objects.get(path)
        if found is not None:
            self._objects[path] = (found[0], replace(found[1], last_accessed=time.time()))


class MemoryUpload(UploadBase):
    def __init__(
        self, store: MemoryStore, path: str, content_type: str | None, expires_at: float | None
    ) -> None:
        self.store = store
        self.path = path
        self.content_type = content_type
        self.expires_at = expires_at
        self.buffer = bytearray()

    async def write(self, chunk: bytes) -> None:
        self._check_writable()
        self.buffer += chunk

    async def _publish(
        self, expected_sha256: str | None, require: Requirement | None
    ) -> tuple[ArtifactInfo, bool]:
        return self.store._commit(self, expected_sha256, require)

    async def _release(self, *, committed: bool) -> None:
        self.buffer = bytearray()
