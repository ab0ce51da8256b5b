"""The artifact document: its shape, and one formatting per version described."""

from __future__ import annotations

import pytest

from artifactd import documents, timestamps
from artifactd.documents import artifact_document
from artifactd.store.base import ArtifactInfo


def _info(path: str = "a/b.bin", created_at: float = 1_764_921_600.0) -> ArtifactInfo:
    return ArtifactInfo(
        path=path,
        size=3,
        content_type="application/octet-stream",
        modified_at=created_at,
        created_at=created_at,
        sha256="ab" * 32,
        last_accessed=created_at + 60,
    )


def test_shape() -> None:
    assert artifact_document(_info()) == {
        "path": "a/b.bin",
        "size": 3,
        "sha256": "ab" * 32,
        "etag": '"' + "ab" * 16 + '"',
        "content_type": "application/octet-stream",
        "created_at": "2025-12-05T08:00:00Z",
        "expires_at": None,
    }


def test_a_version_described_twice_is_formatted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A write's event and its answer describe one version: its timestamps are formatted
    once; each caller still gets its own dict to extend."""
    calls: list[float | None] = []
    real = timestamps.isoformat_utc

    def counting(timestamp: float | None) -> str | None:
        calls.append(timestamp)
        return real(timestamp)

    monkeypatch.setattr(documents, "isoformat_utc", counting)
    info = _info()
    first = artifact_document(info)
    first["reason"] = "size"  # as the eviction event extends it
    second = artifact_document(info)
    assert len(calls) == 2  # created_at and expires_at, once
    assert "reason" not in second
    assert second == {k: v for k, v in first.items() if k != "reason"}


def test_another_version_gets_its_own_document() -> None:
    """Remembered by identity: an equal-looking but different version is described anew."""
    old = artifact_document(_info(created_at=1_764_921_600.0))
    new = artifact_document(_info(created_at=1_764_921_661.0))
    assert old["created_at"] == "2025-12-05T08:00:00Z"
    assert new["created_at"] == "2025-12-05T08:01:01Z"


def test_with_last_accessed() -> None:
    info = _info()
    plain = artifact_document(info)
    full = artifact_document(info, with_last_accessed=True)
    assert full == {**plain, "last_accessed": "2025-12-05T08:01:00Z"}
    assert "last_accessed" not in artifact_document(info)
