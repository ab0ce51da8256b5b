"""The JSON document describing an artifact, shared by the HTTP API and the CLI."""

from __future__ import annotations

from typing import Any

from artifactd.store.base import ArtifactInfo
from artifactd.timestamps import isoformat_utc


def artifact_document(info: ArtifactInfo, *, with_last_accessed: bool = False) -> dict[str, Any]:
    """`{"path", "size", "sha256", "etag", "content_type", "created_at", "expires_at"}`."""
    document: dict[str, Any] = {
        "path": info.path,
        "size": info.size,
        "sha256": info.sha256,
        "etag": info.etag,
        "content_type": info.content_type,
        "created_at": isoformat_utc(info.created_at),
        "expires_at": isoformat_utc(info.expires_at),
    }
    if with_last_accessed:
        document["last_accessed"] = isoformat_utc(info.last_accessed)
    return document
