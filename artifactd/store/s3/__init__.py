"""The S3 backend, one job per module: bucket (client, error classification), objects
(key layout, metadata), reader, upload, publish (conditional writes), lease, accesslog,
cachefill, cleanup, and store (the contract). The design is in docs/storage-s3.md."""

from artifactd.store.s3.reader import S3Reader
from artifactd.store.s3.store import S3Store
from artifactd.store.s3.upload import MIN_PART_BYTES, S3Upload

__all__ = ["MIN_PART_BYTES", "S3Reader", "S3Store", "S3Upload"]
