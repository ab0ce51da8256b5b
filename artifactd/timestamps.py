"""Timestamps in the JSON formats the API promises: ISO 8601 in UTC, `null` for never."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

# What a datetime holds. TTLs are capped (durations.MAX_DURATION_SECONDS), but an expiry
# stored before the cap, or a file's mtime set by hand, may lie outside: shown clamped, so
# one odd row cannot make every listing that includes it fail.
_EARLIEST = -62_135_596_800  # 0001-01-01T00:00:00Z
_LATEST = 253_402_300_799  # 9999-12-31T23:59:59Z


def isoformat_utc(timestamp: float | None) -> str | None:
    """`2026-11-24T07:00:00Z` for an epoch time (whole seconds), None stays None.

    Never raises: a time beyond year 9999 (or before year 1) is shown as that limit, and
    NaN, which no comparison ever finds expired, as None (never).
    """
    if timestamp is None or math.isnan(timestamp):
        return None
    seconds = int(min(max(timestamp, _EARLIEST), _LATEST))
    moment = datetime.min + timedelta(seconds=seconds - _EARLIEST)  # naive, in UTC
    return moment.isoformat(timespec="seconds") + "Z"  # 4-digit years, unlike strftime's
