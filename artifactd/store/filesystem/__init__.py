"""The filesystem backend, one job per module: store (the contract, commits under the
root's write lock), upload, listing, digests (of hand-placed files), metadb (SQLite
metadata), hotcache (recently opened versions), confinement (paths stay inside the root),
reserve (space for removals on a full disk), locks (shared by the root's processes)."""

from artifactd.store.filesystem.metadb import MetadataCorruptError
from artifactd.store.filesystem.store import FilesystemStore
from artifactd.store.filesystem.upload import FileUpload

__all__ = ["FileUpload", "FilesystemStore", "MetadataCorruptError"]
