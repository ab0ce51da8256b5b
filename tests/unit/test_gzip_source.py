"""Where a gzip answer's bytes come from: a current `.gz` sibling, on-the-fly compression
over HTTP/1.1, else (HTTP/1.0, which has no chunked framing) the identity body."""

from __future__ import annotations

import pytest

from artifactd.store.base import ArtifactInfo
from artifactd.web.download.gzip import GzipSource, gzip_source

T = 1_700_000_000.0
ARTIFACT = ArtifactInfo("r.txt", 5000, "text/plain", T, T, sha256="ab" * 32)


def sibling(modified_at: float) -> ArtifactInfo:
    return ArtifactInfo("r.txt.gz", 900, "application/gzip", modified_at, modified_at)


@pytest.mark.parametrize(
    ("version", "gz", "expected"),
    [
        ((1, 1), sibling(T + 5), GzipSource.SIBLING),
        ((1, 1), sibling(T), GzipSource.SIBLING),  # `gzip -k` keeps the source's time
        ((1, 0), sibling(T + 5), GzipSource.SIBLING),  # it has a length: fine for HTTP/1.0
        ((1, 1), sibling(T - 0.001), GzipSource.ON_THE_FLY),  # made from an older version
        ((1, 1), None, GzipSource.ON_THE_FLY),
        ((1, 0), sibling(T - 60), GzipSource.IDENTITY),
        ((1, 0), None, GzipSource.IDENTITY),
    ],
)
def test_gzip_source(
    version: tuple[int, int], gz: ArtifactInfo | None, expected: GzipSource
) -> None:
    assert gzip_source(version, ARTIFACT, gz) is expected
