"""Storage backends behind one contract (`base.Store`)."""

from artifactd.store.base import ArtifactInfo, ArtifactReader, DirEntry, Store, Upload

__all__ = ["ArtifactInfo", "ArtifactReader", "DirEntry", "Store", "Upload"]
