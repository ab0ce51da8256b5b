"""ISO 8601 timestamps in JSON (SPEC "Value formats"), for any time a store may hold."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artifactd.timestamps import isoformat_utc


@pytest.mark.parametrize(
    ("timestamp", "text"),
    [
        (None, None),
        (0, "1970-01-01T00:00:00Z"),
        (1.9, "1970-01-01T00:00:01Z"),
        (-1, "1969-12-31T23:59:59Z"),
        (1795503600, "2026-11-24T07:00:00Z"),
        (253402300799, "9999-12-31T23:59:59Z"),
    ],
)
def test_epoch_times_format_in_utc_to_the_second(timestamp: float | None, text: str) -> None:
    assert isoformat_utc(timestamp) == text


@pytest.mark.parametrize(
    ("timestamp", "text"),
    [
        (253402300800, "9999-12-31T23:59:59Z"),
        (8.64e18, "9999-12-31T23:59:59Z"),  # 10^14 days: a TTL stored before the cap
        (1e30, "9999-12-31T23:59:59Z"),
        (float("inf"), "9999-12-31T23:59:59Z"),
        (-1e30, "0001-01-01T00:00:00Z"),
        (float("-inf"), "0001-01-01T00:00:00Z"),
        (float("nan"), None),
    ],
)
def test_times_no_datetime_holds_are_clamped_not_raised(timestamp: float, text: str | None) -> None:
    """One stored expiry past year 9999 used to fail every listing and API page showing it."""
    assert isoformat_utc(timestamp) == text


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_float_formats(timestamp: float) -> None:
    text = isoformat_utc(timestamp)
    assert text is None or len(text) == 20


@given(st.integers(-62135596800, 253402300799))
def test_the_format_is_what_datetime_says(timestamp: int) -> None:
    expected = datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None).isoformat() + "Z"
    assert isoformat_utc(timestamp) == expected
