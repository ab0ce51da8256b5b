"""Conditional requests (RFC 9110 §13) and HTTP dates (RFC 9110 §5.6.7).

ETag lists are parsed properly (commas may appear inside quoted tags), dates strictly.
"""

from __future__ import annotations

import calendar
import enum
import functools
import math
import re
import time

# The clock If-Range dates are judged by when the caller gives none (a seam for tests).
wall_clock = time.time


class Precondition(enum.Enum):
    PROCEED = "proceed"
    NOT_MODIFIED = "not_modified"  # 304
    FAILED = "failed"  # 412


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_LONG_DAYS = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_MONTH = "(?P<month>" + "|".join(_MONTHS) + ")"
_TIME = r"(?P<hour>\d\d):(?P<minute>\d\d):(?P<second>\d\d)"
# §5.6.7: IMF-fixdate, then the obsolete RFC 850 and asctime forms every recipient accepts.
_DATE_FORMATS = tuple(
    re.compile(pattern, re.ASCII)
    for pattern in (
        rf"(?:{'|'.join(_DAYS)}), (?P<day>\d\d) {_MONTH} (?P<year>\d{{4}}) {_TIME} GMT",
        rf"(?:{_LONG_DAYS}), (?P<day>\d\d)-{_MONTH}-(?P<yy>\d\d) {_TIME} GMT",
        rf"(?:{'|'.join(_DAYS)}) {_MONTH} (?P<day>\d\d| \d) {_TIME} (?P<year>\d{{4}})",
    )
)


def _two_digit_year(yy: int, now: float) -> int:
    """§5.6.7: a two-digit year more than 50 years ahead is in the previous century."""
    this_year = time.gmtime(now).tm_year
    year = this_year - this_year % 100 + yy
    return year - 100 if year > this_year + 50 else year


def parse_http_date(value: str, *, now: float | None = None) -> float | None:
    """Epoch seconds (UTC) for an HTTP-date in any of the three §5.6.7 forms, else None.

    `now` (default: the current time) only resolves RFC 850's two-digit years.
    """
    text = value.strip(" \t")
    for pattern in _DATE_FORMATS:
        match = pattern.fullmatch(text)
        if match:
            break
    else:
        return None
    fields = match.groupdict()
    if fields.get("yy") is not None:
        year = _two_digit_year(int(fields["yy"]), time.time() if now is None else now)
    else:
        year = int(fields["year"])
    month = _MONTHS.index(fields["month"]) + 1
    day, hour = int(fields["day"]), int(fields["hour"])
    minute, second = int(fields["minute"]), int(fields["second"])
    if year < 1 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    if hour > 23 or minute > 59 or second > 60:  # §5.6.7 allows a leap second, 60
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second)))


def format_http_date(timestamp: float) -> str:
    """IMF-fixdate (§5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`; never locale-dependent."""
    return _format_whole_second(math.floor(timestamp))


@functools.lru_cache(maxsize=4096)  # the same Last-Modified is sent again and again
def _format_whole_second(second: int) -> str:
    t = time.gmtime(second)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def _is_etagc(ch: str) -> bool:
    """§8.8.3: etagc = %x21 / %x23-7E / obs-text; note that ',' is allowed."""
    code = ord(ch)
    return code == 0x21 or 0x23 <= code <= 0x7E or code >= 0x80


def parse_etag_list(value: str) -> list[str] | None:
    """Parse an If-Match / If-None-Match value (§13.1.1, §13.1.2).

    Returns None for `*` (any current representation), otherwise the entity-tags exactly as
    sent, e.g. `['"a,b"', 'W/"c"']`. A malformed value gives [] (it matches nothing).
    """
    if value.strip(" \t") == "*":
        return None
    tags: list[str] = []
    i, n = 0, len(value)
    while i < n:
        if value[i] in " \t,":  # §5.6.1: OWS and empty list elements are tolerated
            i += 1
            continue
        start = i
        if value.startswith("W/", i):
            i += 2
        if i >= n or value[i] != '"':
            return []
        i += 1
        while i < n and _is_etagc(value[i]):
            i += 1
        if i >= n or value[i] != '"':
            return []
        i += 1
        tags.append(value[start:i])
        while i < n and value[i] in " \t":
            i += 1
        if i < n and value[i] != ",":
            return []
    return tags


def _strong_match(a: str, b: str) -> bool:
    """§8.8.3.2: both strong and identical."""
    return a == b and not a.startswith("W/")


def _weak_match(a: str, b: str) -> bool:
    """§8.8.3.2: identical opaque-tags, either or both may be weak."""
    return a.removeprefix("W/") == b.removeprefix("W/")


def _last_modified_seconds(last_modified: float) -> int:
    """HTTP dates have one-second resolution (§8.8.2), so compare whole seconds."""
    return math.floor(last_modified)


def evaluate_preconditions(
    method: str,
    *,
    if_match: str | None,
    if_none_match: str | None,
    if_modified_since: str | None,
    if_unmodified_since: str | None,
    etag: str | None,
    last_modified: float | None,
) -> Precondition:
    """Evaluate the preconditions in RFC 9110 §13.2.2's order (If-Range is separate).

    `etag` is the current strong ETag with quotes, None when the resource does not exist;
    `last_modified` is epoch seconds or None.
    """
    safe = method in ("GET", "HEAD")
    # Step 1 (§13.1.1): If-Match; a "*" needs a current representation.
    if if_match is not None:
        tags = parse_etag_list(if_match)
        if tags is None:
            if etag is None:
                return Precondition.FAILED
        elif etag is None or not any(_strong_match(tag, etag) for tag in tags):
            return Precondition.FAILED
    # Step 2 (§13.1.4): If-Unmodified-Since, only without If-Match; bad dates are ignored.
    elif if_unmodified_since is not None and last_modified is not None:
        date = parse_http_date(if_unmodified_since)
        if date is not None and _last_modified_seconds(last_modified) > date:
            return Precondition.FAILED
    # Step 3 (§13.1.2): If-None-Match, weak comparison.
    if if_none_match is not None:
        tags = parse_etag_list(if_none_match)
        if etag is not None and (tags is None or any(_weak_match(tag, etag) for tag in tags)):
            return Precondition.NOT_MODIFIED if safe else Precondition.FAILED
    # Step 4 (§13.1.3): If-Modified-Since, only for GET/HEAD without If-None-Match.
    elif safe and if_modified_since is not None and last_modified is not None:
        date = parse_http_date(if_modified_since)
        if date is not None and _last_modified_seconds(last_modified) <= date:
            return Precondition.NOT_MODIFIED
    return Precondition.PROCEED


def if_range_matches(
    if_range: str | None,
    *,
    etag: str | None,
    last_modified: float | None,
    now: float | None = None,
) -> bool:
    """Whether a Range may be honoured given If-Range (§13.1.5); True when there is none.

    An entity-tag must strongly match `etag` (a weak tag never does). An HTTP-date must
    equal `last_modified` to the second, and §13.1.5 counts it only if `last_modified` is
    a strong validator (§8.8.2.2): that second must be over at `now` (default: the
    current time), else another version may have carried the same date and the client's
    bytes may be of it. Anything else is false: send the whole body.
    """
    if if_range is None:
        return True
    value = if_range.strip(" \t")
    if value.startswith(('"', "W/")):
        tags = parse_etag_list(value)
        if etag is None or tags is None or len(tags) != 1:
            return False
        return _strong_match(tags[0], etag)
    date = parse_http_date(value)
    if date is None or last_modified is None:
        return False
    return _last_modified_seconds(last_modified) == date and last_modified_is_strong(
        last_modified, wall_clock() if now is None else now
    )


def last_modified_is_strong(last_modified: float, now: float) -> bool:
    """§8.8.2.2: a Last-Modified is strong when no other version can share its date: once
    the second it names is over (a change from now on gets a later date). Dated in the
    future (a clock step, a file touched by hand), it is not."""
    return now >= _last_modified_seconds(last_modified) + 1
