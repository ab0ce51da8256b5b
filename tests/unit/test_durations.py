"""Durations, sizes and rates (SPEC "Value formats")."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artifactd.durations import (
    MAX_DURATION_SECONDS,
    check_duration,
    format_duration,
    format_size,
    parse_decimal,
    parse_duration,
    parse_rate,
    parse_size,
)
from artifactd.errors import InvalidValueError


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("300", 300), ("007", 7), ("000", 0)])
def test_decimals_are_ascii_digits_within_bounds(text: str, value: int) -> None:
    assert parse_decimal(text, name="wait", maximum=300) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\u00b2",  # SUPERSCRIPT TWO: str.isdigit() says yes, int() says no (was a 500)
        "\u0663",  # ARABIC-INDIC DIGIT THREE: int() read it as 3
        "\uff11",  # FULLWIDTH DIGIT ONE
        "1\u00b2",
        "+1",
        "-1",
        " 1",
        "1 ",
        "1.0",
        "1e2",
        "0x1",
        "301",
        "9" * 5000,  # not converted: longer than the maximum, whatever int()'s digit limit
        "0" * 5000 + "301",
    ],
)
def test_anything_else_is_not_a_decimal(text: str) -> None:
    with pytest.raises(InvalidValueError, match="wait must be a whole number from 0 to 300"):
        parse_decimal(text, name="wait", maximum=300)


def test_a_decimal_below_the_minimum_is_invalid() -> None:
    assert parse_decimal("1", name="limit", minimum=1, maximum=10) == 1
    with pytest.raises(InvalidValueError, match="from 1 to 10"):
        parse_decimal("0", name="limit", minimum=1, maximum=10)


@given(st.text(max_size=8), st.integers(0, 10**20))
def test_a_decimal_is_exactly_what_ascii_digits_spell(text: str, maximum: int) -> None:
    try:
        value = parse_decimal(text, name="n", maximum=maximum)
    except InvalidValueError:
        assert not (text.isascii() and text.isdigit()) or int(text) > maximum
    else:
        assert text.isascii() and text.isdigit() and value == int(text) <= maximum


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("15m", 900.0),
        ("12h", 43200.0),
        ("7d", 604800.0),
        ("3600", 3600.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("1.5h", 5400.0),
        ("7D", 604800.0),
        ("15M", 900.0),
        (" 90s ", 90.0),
        ("never", None),
        ("NEVER", None),
        ("Never", None),
    ],
)
def test_durations_parse_to_seconds_or_none_for_never(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", " ", "-5", "-5s", "7x", "1.5.3", "s", "5 s", "5ss", "1e3", "inf", "nan", "٣s", "9" * 400],
)
def test_bad_durations_are_invalid_values(text: str) -> None:
    with pytest.raises(InvalidValueError):
        parse_duration(text)


def test_the_longest_duration_is_100_years() -> None:
    assert MAX_DURATION_SECONDS == 36525 * 86400
    assert parse_duration("36525d") == MAX_DURATION_SECONDS
    assert parse_duration(f"{MAX_DURATION_SECONDS}s") == MAX_DURATION_SECONDS


@pytest.mark.parametrize(
    "text",
    [
        "36526d",
        "876601h",
        f"{MAX_DURATION_SECONDS + 1}",
        f"{MAX_DURATION_SECONDS}.5",
        "99999999999999d",
        "99999999999999999999999d",
        "9" * 400 + "d",
    ],
)
def test_durations_over_100_years_are_invalid(text: str) -> None:
    """A TTL past what datetime holds was stored, then broke every listing showing it."""
    with pytest.raises(InvalidValueError, match="longer than 100 years"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [-1, -0.5, float("nan"), float("inf"), 1e30, 10**30])
def test_numbers_outside_the_duration_range_are_invalid(seconds: float) -> None:
    with pytest.raises(InvalidValueError):
        check_duration(seconds)


@pytest.mark.parametrize("seconds", [0, 1, 0.25, MAX_DURATION_SECONDS])
def test_numbers_within_the_duration_range_are_seconds(seconds: float) -> None:
    assert check_duration(seconds) == seconds
    assert isinstance(check_duration(seconds), float)


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_duration, "1\u017f"),  # LATIN SMALL LETTER LONG S: matched `s` case-blind
        (parse_duration, "1\u212a"),  # KELVIN SIGN
        (parse_duration, "\u00b2"),  # SUPERSCRIPT TWO
        (parse_duration, "\u0663"),  # ARABIC-INDIC DIGIT THREE
        (parse_size, "1\u212a"),  # KELVIN SIGN: was read as K
        (parse_size, "1\u212aiB"),
        (parse_size, "\u00b2"),
        (parse_rate, "1/\u017f"),
        (parse_rate, "\u00b2/s"),
    ],
)
def test_only_ascii_digits_and_unit_letters_are_read(
    parse: Callable[[str], object], text: str
) -> None:
    with pytest.raises(InvalidValueError):
        parse(text)


def test_an_invalid_value_is_also_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_duration("soon")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "never"),
        (0, "0s"),
        (90, "90s"),
        (900, "15m"),
        (3600.0, "1h"),
        (86400 * 7, "7d"),
        (90000, "25h"),
        (1.5, "1.5s"),
    ],
)
def test_durations_format_in_the_largest_exact_unit(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(0, MAX_DURATION_SECONDS))
def test_formatted_durations_parse_back(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1048576),
        ("0", 0),
        ("1K", 1024),
        ("1KiB", 1024),
        ("1k", 1024),
        ("1kib", 1024),
        ("1KB", 1024),
        ("1Ki", 1024),
        ("512M", 512 * 1024**2),
        ("512MiB", 512 * 1024**2),
        ("512MB", 512 * 1024**2),
        ("512 MiB", 512 * 1024**2),
        ("50GiB", 50 * 1024**3),
        ("2T", 2 * 1024**4),
        ("2TiB", 2 * 1024**4),
        ("3PiB", 3 * 1024**5),
        ("7E", 7 * 1024**6),
        ("1.5G", 3 * 512 * 1024**2),
        ("100B", 100),
        (" 64K ", 65536),
    ],
)
def test_sizes_parse_in_powers_of_1024(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-1",
        "-1K",
        "1X",
        "K",
        "1.5",
        "1.5.3K",
        "1 K B",
        "1iB",
        "1Z",
        "8E",
        "1e6",
        "٣K",
        "9" * 30,
        "1" * 5000,
    ],
)
def test_bad_sizes_are_invalid_values(text: str) -> None:
    with pytest.raises(InvalidValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (3 * 512 * 1024**2, "1.5 GiB"),
        (1024**2 - 1, "1 MiB"),
        (50 * 1024**3, "50 GiB"),
        (2 * 1024**4, "2 TiB"),
        (2**63 - 1, "8 EiB"),
    ],
)
def test_sizes_format_for_humans(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(0, 2**62))
def test_formatted_sizes_parse_back_to_within_five_percent(size: int) -> None:
    assert abs(parse_size(format_size(size)) - size) <= size * 0.05


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("600/min", (600, 60.0)),
        ("10/s", (10, 1.0)),
        ("3600/h", (3600, 3600.0)),
        ("5/MIN", (5, 60.0)),
        (" 1 / s ", (1, 1.0)),
        ("100/sec", (100, 1.0)),
        ("100/hour", (100, 3600.0)),
    ],
)
def test_rates_parse_to_a_count_and_a_period_in_seconds(text: str, rate: tuple[int, float]) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    "text", ["", "600", "0/min", "-1/s", "1.5/s", "10/day", "10/", "/s", "10/s/s", "1" * 40 + "/s"]
)
def test_bad_rates_are_invalid_values(text: str) -> None:
    with pytest.raises(InvalidValueError):
        parse_rate(text)


@given(st.text(max_size=30))
def test_value_parsers_raise_only_invalid_value_errors(text: str) -> None:
    for parse in (parse_duration, parse_size, parse_rate):
        with contextlib.suppress(InvalidValueError):
            parse(text)
