"""The JSON document describing an artifact, shared by the HTTP API and the CLI."""

from __future__ import annotations

from typing import Any

from artifactd.store.base import ArtifactInfo
from artifactd.timestamps import isoformat_utc

# The version last described and its document. A write describes its new version twice,
# one right after the other (its event, then its answer): the second is a copy of the
# first, not a second formatting of the same timestamps. Held by identity: the version is
# immutable and kept alive here, so an equal `id` is the same version.
_last_described: tuple[ArtifactInfo, dict[str, Any]] | None = None


def artifact_document(info: ArtifactInfo, *, with_last_accessed: bool = False) -> dict[str, Any]:
    """`{"path", "size", "sha256", "etag", "content_type", "created_at", "expires_at"}`
    (a new dict each call: callers may extend it)."""
    global _last_described
    if with_last_accessed:
        document = _document(info)
        document["last_accessed"] = isoformat_utc(info.last_accessed)
        return document
    last = _last_described
    if last is not None and last[0] is info:
        return dict(last[1])
    document = _document(info)
    _last_described = (info, document)
    return dict(document)


def _document(info: ArtifactInfo) -> dict[str, Any]:
    return {
        "path": info.path,
        "size": info.size,
        "sha256": info.sha256,
        "etag": info.etag,
        "content_type": info.content_type,
        "created_at": isoformat_utc(info.created_at),
        "expires_at": isoformat_utc(info.expires_at),
    }
