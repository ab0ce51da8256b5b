"""Parsing and formatting of the value formats in SPEC "Value formats": whole numbers,
durations, sizes and rates. Every parse error is an InvalidValueError (also a ValueError)
naming the problem.

Numbers are ASCII digits only, and units ASCII letters in any case: a regex's `\\d`,
`str.isdigit` and case-insensitive matching also accept other scripts' digits, superscripts
and look-alike letters (`ſ` matches `s`), which no client means.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from artifactd.errors import InvalidValueError

_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd]?)", re.IGNORECASE | re.ASCII)
# Longer than any retention anyone means, short enough that every expiry (now + TTL) is a
# date that timestamps, file systems and JSON all hold.
MAX_DURATION_SECONDS = 36525 * 86400  # 100 years of 365.25 days

_SIZE_UNITS = {"": 1} | {unit: 1024 ** (i + 1) for i, unit in enumerate("kmgtpe")}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?(?:([kmgtpe])(?:ib?|b)?|b)?", re.IGNORECASE | re.ASCII)
_MAX_SIZE = 2**63 - 1  # what a file offset can hold
_SIZE_NAMES = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")

_RATE_PERIODS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"([0-9]{1,18}) ?/ ?([a-z]+)", re.IGNORECASE | re.ASCII)


def parse_decimal(text: str, *, name: str, maximum: int, minimum: int = 0) -> int:
    """The whole number `text` from `minimum` to `maximum`, in ASCII digits (leading zeros
    allowed, nothing else: no sign, no space); `name` says what it is, for the message.

    For decimals in query values and headers (`?wait=`, `?limit=`, Last-Event-ID,
    Content-Length, Retry-After): `str.isdigit` takes `²` (which `int()` then refuses with
    a ValueError, a 500) and `int()` takes `٣` as 3.
    """
    digits = text.lstrip("0") or "0"
    if not (text.isascii() and text.isdigit()) or len(digits) > len(str(maximum)):
        raise InvalidValueError(f"{name} must be a whole number from {minimum} to {maximum}")
    value = int(digits)
    if not minimum <= value <= maximum:
        raise InvalidValueError(f"{name} must be a whole number from {minimum} to {maximum}")
    return value


def parse_duration(text: str) -> float | None:
    """Seconds for `90s`, `15m`, `12h`, `7d` or a plain number of seconds; None for `never`.

    Units are case-insensitive and a decimal fraction is allowed (`1.5h`); zero is allowed,
    more than 100 years is not (`check_duration`).
    """
    value = text.strip()
    if value.lower() == "never":
        return None
    match = _DURATION.fullmatch(value)
    if match is None:
        raise InvalidValueError(f"invalid duration {text!r} (expected e.g. 90s, 15m, 12h, 7d)")
    return check_duration(float(match[1]) * _DURATION_UNITS[match[2].lower()], text)


def check_duration(seconds: float, text: object = None) -> float:
    """`seconds` if it is a duration SPEC allows, from 0 to 100 years; `text` is what the
    user wrote, for the message. Every duration (a TTL from a header, a query, a form, a
    flag, the environment or a config file's number) passes here."""
    shown = repr(text if text is not None else seconds)
    if seconds < 0:
        raise InvalidValueError(f"invalid duration {shown}: negative")
    if not seconds <= MAX_DURATION_SECONDS:  # NaN and infinity included
        raise InvalidValueError(f"duration {shown} is longer than 100 years")
    return float(seconds)


def format_duration(seconds: float | None) -> str:
    """The shortest exact form `parse_duration` reads back: `never`, `7d`, `90s`, `1.5s`.

    Fractions of a second are kept to the millisecond.
    """
    if seconds is None:
        return "never"
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidValueError(f"cannot format duration {seconds!r}")
    if seconds != int(seconds):
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    whole = int(seconds)
    for unit in ("d", "h", "m"):
        if whole and whole % _DURATION_UNITS[unit] == 0:
            return f"{whole // _DURATION_UNITS[unit]}{unit}"
    return f"{whole}s"


def parse_size(text: str) -> int:
    """Bytes for `1048576`, `512M`, `512MiB`, `50GiB`, `1.5G`: units are powers of 1024.

    Units (K, M, G, T, and P, E for symmetry with `format_size`) are case-insensitive;
    `B`, `Ki`/`Mi`/... and `KB`/`MB`/... are accepted as the same powers of 1024 and one
    space may separate number and unit. Fractions are rounded down to whole bytes.
    """
    value = text.strip()
    match = _SIZE.fullmatch(value) if len(value) <= 64 else None
    if match is None:
        raise InvalidValueError(f"invalid size {text!r} (expected e.g. 1048576, 512M, 50GiB)")
    number, unit = match[1], (match[2] or "").lower()
    if "." in number and not unit:
        raise InvalidValueError(f"invalid size {text!r}: a number of bytes must be whole")
    size = int(Fraction(number) * _SIZE_UNITS[unit])  # non-negative: int() rounds down
    if size > _MAX_SIZE:
        raise InvalidValueError(f"size {text!r} is too large")
    return size


def format_size(n: int) -> str:
    """A human-readable size in powers of 1024: `512 B`, `1 KiB`, `1.5 MiB`."""
    if n < 0:
        return "-" + format_size(-n)
    if n < 1024:
        return f"{n} B"
    for exponent, name in enumerate(_SIZE_NAMES, start=1):
        value = n / 1024**exponent
        if round(value, 1) < 1024 or name == _SIZE_NAMES[-1]:
            break
    return f"{value:.1f}".removesuffix(".0") + f" {name}"


def parse_rate(text: str) -> tuple[int, float]:
    """`(600, 60.0)` for `600/min`: N > 0 requests per period of `s`, `min` or `h`.

    Also accepted: `sec`, `m`, `hour`, any case.
    """
    match = _RATE.fullmatch(text.strip())
    period = _RATE_PERIODS.get(match[2].lower()) if match else None
    if match is None or period is None:
        raise InvalidValueError(f"invalid rate {text!r} (expected N/s, N/min or N/h)")
    count = int(match[1])
    if count <= 0:
        raise InvalidValueError(f"invalid rate {text!r}: N must be positive")
    return count, period
