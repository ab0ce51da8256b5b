"""Preconditions (RFC 9110 §13) and HTTP dates (§5.6.7)."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artifactd.http.conditional import (
    Precondition,
    evaluate_preconditions,
    format_http_date,
    if_range_matches,
    parse_etag_list,
    parse_http_date,
)

# RFC 9110 §5.6.7's example: Sun, 06 Nov 1994 08:49:37 GMT.
EXAMPLE = float(calendar.timegm((1994, 11, 6, 8, 49, 37)))
EXAMPLE_DATE = "Sun, 06 Nov 1994 08:49:37 GMT"
EARLIER_DATE = "Sun, 06 Nov 1994 08:49:36 GMT"
LATER_DATE = "Sun, 06 Nov 1994 08:49:38 GMT"
ETAG = '"abc"'


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "  Sun, 06 Nov 1994 08:49:37 GMT\t",
    ],
)
def test_the_three_http_date_forms_of_rfc_9110_parse_to_the_same_instant(value: str) -> None:
    assert parse_http_date(value) == EXAMPLE


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 0000 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",
        "Sun, ٠٦ Nov 1994 08:49:37 GMT",
        "1994-11-06T08:49:37Z",
        "784111777",
    ],
)
def test_anything_but_a_valid_http_date_parses_to_none(value: str) -> None:
    assert parse_http_date(value) is None


def test_a_leap_second_is_accepted() -> None:
    assert parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT") == calendar.timegm(
        (2017, 1, 1, 0, 0, 0)
    )


@pytest.mark.parametrize(
    ("value", "year"),
    [
        ("Thursday, 01-Jan-70 00:00:00 GMT", 2070),
        ("Wednesday, 01-Jan-76 00:00:00 GMT", 2076),
        ("Wednesday, 01-Jan-77 00:00:00 GMT", 1977),
        ("Saturday, 01-Jan-00 00:00:00 GMT", 2000),
    ],
)
def test_rfc_850_years_more_than_50_years_ahead_belong_to_the_past_century(
    value: str, year: int
) -> None:
    now = float(calendar.timegm((2026, 6, 1, 0, 0, 0)))
    assert parse_http_date(value, now=now) == calendar.timegm((year, 1, 1, 0, 0, 0))


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (EXAMPLE, EXAMPLE_DATE),
        (EXAMPLE + 0.999, EXAMPLE_DATE),
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (1795503600, "Tue, 24 Nov 2026 07:00:00 GMT"),
    ],
)
def test_dates_are_formatted_as_imf_fixdate(timestamp: float, expected: str) -> None:
    assert format_http_date(timestamp) == expected


@given(st.integers(0, 253402300799))
def test_formatted_dates_parse_back_to_the_same_second(timestamp: int) -> None:
    assert parse_http_date(format_http_date(timestamp)) == timestamp


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("*", None),
        (" * ", None),
        ('"abc"', ['"abc"']),
        ('W/"abc"', ['W/"abc"']),
        ('"a", W/"b" ,"c"', ['"a"', 'W/"b"', '"c"']),
        ('"a,b", "c"', ['"a,b"', '"c"']),
        ('""', ['""']),
        ('"a",,  ,"b",', ['"a"', '"b"']),
        ('"\xe9"', ['"\xe9"']),
        ("", []),
        ("abc", []),
        ('"abc', []),
        ('"a" "b"', []),
        ('"a"x', []),
        ('w/"a"', []),
        ('W/ "a"', []),
        ('"a b"', []),
        ('"a\\"b"', []),
        ('*, "a"', []),
    ],
)
def test_etag_lists_parse_with_star_as_none_and_malformed_as_empty(
    value: str, expected: list[str] | None
) -> None:
    assert parse_etag_list(value) == expected


def evaluate(
    method: str = "GET",
    *,
    if_match: str | None = None,
    if_none_match: str | None = None,
    if_modified_since: str | None = None,
    if_unmodified_since: str | None = None,
    etag: str | None = ETAG,
    last_modified: float | None = EXAMPLE + 0.5,
) -> Precondition:
    return evaluate_preconditions(
        method,
        if_match=if_match,
        if_none_match=if_none_match,
        if_modified_since=if_modified_since,
        if_unmodified_since=if_unmodified_since,
        etag=etag,
        last_modified=last_modified,
    )


PROCEED, NOT_MODIFIED, FAILED = Precondition.PROCEED, Precondition.NOT_MODIFIED, Precondition.FAILED


@pytest.mark.parametrize(
    ("if_match", "etag", "expected"),
    [
        ('"abc"', ETAG, PROCEED),
        ('"x", "abc"', ETAG, PROCEED),
        ('"x"', ETAG, FAILED),
        ('W/"abc"', ETAG, FAILED),
        ("*", ETAG, PROCEED),
        ("*", None, FAILED),
        ('"abc"', None, FAILED),
        ("garbage", ETAG, FAILED),
        ("", ETAG, FAILED),
    ],
)
def test_if_match_needs_a_strong_match_or_star_with_an_existing_resource(
    if_match: str, etag: str | None, expected: Precondition
) -> None:
    assert evaluate("PUT", if_match=if_match, etag=etag) == expected
    assert evaluate("GET", if_match=if_match, etag=etag) == expected


@pytest.mark.parametrize(
    ("if_unmodified_since", "expected"),
    [
        (EXAMPLE_DATE, PROCEED),
        (LATER_DATE, PROCEED),
        (EARLIER_DATE, FAILED),
        ("not a date", PROCEED),
    ],
)
def test_if_unmodified_since_fails_when_modified_after_the_date_at_second_precision(
    if_unmodified_since: str, expected: Precondition
) -> None:
    assert evaluate("PUT", if_unmodified_since=if_unmodified_since) == expected


def test_if_unmodified_since_is_ignored_when_if_match_is_present() -> None:
    assert evaluate("PUT", if_match=ETAG, if_unmodified_since=EARLIER_DATE) == PROCEED


def test_if_unmodified_since_is_ignored_without_a_modification_date() -> None:
    assert evaluate("PUT", if_unmodified_since=EARLIER_DATE, last_modified=None) == PROCEED


@pytest.mark.parametrize(
    ("method", "if_none_match", "etag", "expected"),
    [
        ("GET", '"abc"', ETAG, NOT_MODIFIED),
        ("HEAD", '"abc"', ETAG, NOT_MODIFIED),
        ("GET", 'W/"abc"', ETAG, NOT_MODIFIED),
        ("GET", '"x", W/"abc"', ETAG, NOT_MODIFIED),
        ("GET", "*", ETAG, NOT_MODIFIED),
        ("GET", '"x"', ETAG, PROCEED),
        ("GET", "*", None, PROCEED),
        ("GET", "garbage", ETAG, PROCEED),
        ("PUT", "*", ETAG, FAILED),
        ("PUT", "*", None, PROCEED),
        ("PUT", '"abc"', ETAG, FAILED),
        ("DELETE", '"x"', ETAG, PROCEED),
    ],
)
def test_if_none_match_uses_weak_comparison_and_answers_304_only_for_get_and_head(
    method: str, if_none_match: str, etag: str | None, expected: Precondition
) -> None:
    assert evaluate(method, if_none_match=if_none_match, etag=etag) == expected


@pytest.mark.parametrize(
    ("method", "if_modified_since", "expected"),
    [
        ("GET", EXAMPLE_DATE, NOT_MODIFIED),
        ("HEAD", LATER_DATE, NOT_MODIFIED),
        ("GET", EARLIER_DATE, PROCEED),
        ("GET", "Sun, 06 Nov 1994 08:49:37 GMT junk", PROCEED),
        ("PUT", EXAMPLE_DATE, PROCEED),
        ("DELETE", LATER_DATE, PROCEED),
    ],
)
def test_if_modified_since_answers_304_for_get_and_head_when_not_modified_since(
    method: str, if_modified_since: str, expected: Precondition
) -> None:
    assert evaluate(method, if_modified_since=if_modified_since) == expected


def test_if_modified_since_is_ignored_when_if_none_match_is_present() -> None:
    assert evaluate(if_none_match='"x"', if_modified_since=LATER_DATE) == PROCEED


def test_if_match_failure_wins_over_if_none_match() -> None:
    assert evaluate(if_match='"x"', if_none_match=ETAG) == FAILED


def test_if_unmodified_since_failure_wins_over_if_modified_since() -> None:
    assert evaluate(if_unmodified_since=EARLIER_DATE, if_modified_since=LATER_DATE) == FAILED


def test_a_passing_if_match_still_lets_if_none_match_answer_304() -> None:
    assert evaluate(if_match=ETAG, if_none_match=ETAG) == NOT_MODIFIED


def test_no_conditional_headers_proceed() -> None:
    assert evaluate() == PROCEED
    assert evaluate("PUT", etag=None, last_modified=None) == PROCEED


@pytest.mark.parametrize(
    ("if_range", "expected"),
    [
        (None, True),
        ('"abc"', True),
        (' "abc" ', True),
        ('"abd"', False),
        ('W/"abc"', False),
        ('"abc", "abd"', False),
        (EXAMPLE_DATE, True),
        ("Sunday, 06-Nov-94 08:49:37 GMT", True),
        (EARLIER_DATE, False),
        (LATER_DATE, False),
        ("", False),
        ("garbage", False),
    ],
)
def test_if_range_needs_a_strong_etag_match_or_the_exact_modification_date(
    if_range: str | None, expected: bool
) -> None:
    assert if_range_matches(if_range, etag=ETAG, last_modified=EXAMPLE + 0.5) is expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (EXAMPLE + 0.6, False),  # the second the date names is not over: weak (§8.8.2.2)
        (EXAMPLE + 0.999, False),
        (EXAMPLE - 5, False),  # changed "in the future" (a clock step): never strong
        (EXAMPLE + 1, True),  # the next second: no later change can carry this date
        (EXAMPLE + 86400, True),
    ],
)
def test_if_range_date_matches_only_a_strong_last_modified(now: float, expected: bool) -> None:
    matches = if_range_matches(EXAMPLE_DATE, etag=ETAG, last_modified=EXAMPLE + 0.5, now=now)
    assert matches is expected
    assert if_range_matches(ETAG, etag=ETAG, last_modified=EXAMPLE + 0.5, now=now) is True


def test_if_range_never_matches_a_resource_without_validators() -> None:
    assert if_range_matches(ETAG, etag=None, last_modified=None) is False
    assert if_range_matches(EXAMPLE_DATE, etag=None, last_modified=None) is False


@given(st.text())
def test_etag_list_parsing_never_raises(value: str) -> None:
    result = parse_etag_list(value)
    assert result is None or all(tag.endswith('"') for tag in result)


@given(st.text())
def test_http_date_parsing_never_raises(value: str) -> None:
    parse_http_date(value)
