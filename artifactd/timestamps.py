"""Timestamps in the JSON formats the API promises: ISO 8601 in UTC, `null` for never."""

from __future__ import annotations

from datetime import UTC, datetime


def isoformat_utc(timestamp: float | None) -> str | None:
    """`2026-11-24T07:00:00Z` for an epoch time (whole seconds), None stays None."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
