"""Weighted lists (RFC 9110 §12.4.2) and the two negotiations built on them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artifactd.http.negotiation import coding_accepted, media_type_quality, parse_weighted


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip", {"gzip": 1.0}),
        ("gzip;q=0.5, br", {"gzip": 0.5, "br": 1.0}),
        ("GZIP ; Q=0.2", {"gzip": 0.2}),
        ("gzip;q=abc", {"gzip": 0.0}),
        ("gzip;q=7", {"gzip": 1.0}),
        ("gzip, gzip;q=0", {"gzip": 1.0}),
        (", ,gzip", {"gzip": 1.0}),
        ("", {}),
        (None, {}),
    ],
)
def test_parse_weighted(header: str | None, expected: dict[str, float]) -> None:
    assert parse_weighted(header) == expected


@pytest.mark.parametrize(
    ("accept", "media_type", "quality"),
    [
        ("application/json", "application/json", 1.0),
        ("text/html,application/xhtml+xml,*/*;q=0.8", "application/json", 0.8),
        ("text/*;q=0.3", "text/html", 0.3),
        ("text/html;q=0.9, text/*;q=0.3", "text/html", 0.9),
        ("image/png", "text/html", -1.0),
    ],
)
def test_media_type_quality_prefers_the_most_specific_range(
    accept: str, media_type: str, quality: float
) -> None:
    assert media_type_quality(accept, media_type) == quality


def test_coding_accepted_honours_aliases_and_wildcards() -> None:
    assert coding_accepted("x-gzip", "gzip", "x-gzip")
    assert coding_accepted("*", "gzip")
    assert not coding_accepted("*, gzip;q=0", "gzip")
    assert not coding_accepted("identity", "gzip")


@given(st.text())
def test_parse_weighted_never_raises_and_weights_stay_in_range(header: str) -> None:
    assert all(0.0 <= q <= 1.0 for q in parse_weighted(header).values())
