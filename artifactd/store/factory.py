"""Building the storage backend the settings ask for."""

from __future__ import annotations

from artifactd.settings import Settings
from artifactd.store.base import Store
from artifactd.store.filesystem import FilesystemStore


def build_store(settings: Settings) -> Store:
    """The configured backend, not started yet (`await store.start()` before use).

    Blocking (the filesystem backend opens its database): call it before the event loop
    runs, or in a thread."""
    if settings.backend == "s3":
        from artifactd.store.s3 import S3Store  # aiobotocore is only imported when used

        assert settings.s3_bucket is not None  # Settings checks this
        return S3Store(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint,
            prefix=settings.s3_prefix,
            region=settings.s3_region,
            cache_dir=settings.cache_dir,
            cache_max_size=settings.cache_max_size,
        )
    return FilesystemStore(settings.root)
