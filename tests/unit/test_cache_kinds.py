"""The build-cache kind of a /files/ request, from its client's User-Agent."""

from __future__ import annotations

import pytest

from artifactd.metrics import TrafficTally, files_cache_kind


@pytest.mark.parametrize(
    ("user_agent", "kind"),
    [
        ("ccache/4.10.2", "ccache"),
        ("bazel/7.4.1", "bazel"),
        ("Gradle/4.4.1 (Linux;6.1;amd64) (Debian;17.0.15;17.0.15+6)", "gradle"),
        ("bazel/", "bazel"),  # Debian's bazel-bootstrap sends no version
        ("sccache/0.16.0", "sccache"),
        ("opendal/0.54.0", "other"),  # OpenDAL's default; sccache sends its own
        ("curl/8.5.0", "other"),
        ("", "other"),
        (None, "other"),
        ("gradle/4.4.1", "other"),  # Gradle spells itself with a capital G
        ("Mozilla/5.0 ccache/4.10", "other"),  # a prefix, not a substring
    ],
)
def test_files_cache_kind(user_agent: str | None, kind: str) -> None:
    assert files_cache_kind(user_agent) == kind


def test_files_cache_results() -> None:
    tally = TrafficTally()
    tally.count_files_cache("GET", 200, "ccache/4.10", 0, 100)
    tally.count_files_cache("GET", 206, "ccache/4.10", 0, 10)
    tally.count_files_cache("GET", 404, "ccache/4.10", 0, 60)
    tally.count_files_cache("PUT", 201, "ccache/4.10", 500, 0)
    tally.count_files_cache("PUT", 403, "ccache/4.10", 500, 0)  # refused: no write
    tally.count_files_cache("HEAD", 200, "ccache/4.10", 0, 0)  # not a lookup
    tally.count_files_cache("DELETE", 204, "ccache/4.10", 0, 0)
    tally.count_files_cache("GET", 500, "ccache/4.10", 0, 0)
    assert dict(tally.caches) == {
        ("ccache", "hit"): 2,
        ("ccache", "miss"): 1,
        ("ccache", "write"): 1,
    }
    assert dict(tally.cache_bytes) == {("ccache", "hit"): 110, ("ccache", "write"): 500}
