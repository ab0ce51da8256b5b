"""The upload-resource store of a storage backend: one per store, so every request (and the
evictor) of a process shares it (the memory backend's resources live in it)."""

from __future__ import annotations

import weakref

from artifactd.resumable.base import UploadResources
from artifactd.resumable.filesystem import FilesystemResources
from artifactd.resumable.memory import MemoryResources
from artifactd.store.base import Store
from artifactd.store.filesystem import FilesystemStore
from artifactd.store.memory import MemoryStore

_made: weakref.WeakKeyDictionary[Store, UploadResources] = weakref.WeakKeyDictionary()


def resources_for(store: Store) -> UploadResources:
    """The upload resources kept beside `store`'s artifacts (the same object every call)."""
    found = _made.get(store)
    if found is None:
        found = _made[store] = _build(store)
    return found


def _build(store: Store) -> UploadResources:
    if isinstance(store, FilesystemStore):
        return FilesystemResources(store.state_dir)
    if isinstance(store, MemoryStore):
        return MemoryResources()
    # Imported only when used, as store/factory.py does: aiobotocore is heavy.
    from artifactd.resumable.s3 import S3Resources
    from artifactd.store.s3 import S3Store

    if isinstance(store, S3Store):
        return S3Resources(
            store.bucket, store.layout.uploads_prefix, store.part_size_bytes, store.node_id
        )
    raise TypeError(f"no upload resources for {type(store).__name__}")
