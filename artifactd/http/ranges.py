"""Range header evaluation (RFC 9110 §14): which bytes of a representation to send.

Pure and linear-time: a hostile header can cost neither much CPU nor much memory.
"""

from __future__ import annotations

import enum
import itertools
import re
from dataclasses import dataclass

# Digit strings longer than this are "larger than any file" (2**63 has 19 digits); clamping
# them keeps int() cheap and away from Python's int_max_str_digits limit.
_MAX_DIGITS = 19
_HUGE = 10**_MAX_DIGITS
_OWS = " \t"  # RFC 9110 §5.6.3
# The header nearly every client sends, one plain int-range (`bytes=0-1023`, `bytes=500-`):
# decided by one regular expression; anything else goes through the general parser.
_ONE_INT_RANGE = re.compile(r"bytes=([0-9]{1,18})-([0-9]{0,18})")


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive byte range `start..end` (RFC 9110 §14.1.1 int-range, resolved)."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"invalid byte range {self.start}-{self.end}")

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        """The Content-Range value for this range of a `size`-byte representation (§14.4)."""
        return f"bytes {self.start}-{self.end}/{size}"


class RangeKind(enum.Enum):
    FULL = "full"  # ignore Range: 200 with the whole representation
    PARTIAL = "partial"  # 206 with `ranges` (one part, or multipart/byteranges)
    UNSATISFIABLE = "unsatisfiable"  # 416 with `Content-Range: bytes */size`


@dataclass(frozen=True, slots=True)
class RangeDecision:
    kind: RangeKind
    ranges: tuple[ByteRange, ...] = ()


_FULL = RangeDecision(RangeKind.FULL)
_UNSATISFIABLE = RangeDecision(RangeKind.UNSATISFIABLE)

# A parsed range-spec: (first, last) for an int-range (last None when open), or (None, n)
# for a suffix-range. The digit strings are kept for exact comparison of huge values.
_Spec = tuple[str | None, str | None]


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # isdigit alone accepts e.g. "²" or "٣"


def _number(digits: str) -> int:
    """The value of a digit string, clamped to _HUGE (linear time, never a huge int)."""
    digits = digits.lstrip("0") or "0"
    return _HUGE if len(digits) > _MAX_DIGITS else int(digits)


def _less(a: str, b: str) -> bool:
    """Exact `int(a) < int(b)` for digit strings of any length, without converting them."""
    a, b = a.lstrip("0"), b.lstrip("0")
    return (len(a), a) < (len(b), b)


def _parse_spec(spec: str) -> _Spec | None:
    """One range-spec (§14.1.1), or None when it is malformed."""
    first, dash, last = spec.partition("-")
    if not dash or (last and not _is_digits(last)):
        return None
    if not first:
        return (None, last) if last else None  # suffix-range "-n"; a bare "-" is malformed
    if not _is_digits(first) or (last and _less(last, first)):
        return None  # §14.1.1: an int-range with last-pos < first-pos is invalid
    return (first, last or None)


def _parse(header: str, max_ranges: int) -> list[_Spec] | None:
    """The range-specs of a `bytes=` header, or None to ignore the header (serve it all)."""
    unit, equals, range_set = header.partition("=")
    if not equals or unit.lower() != "bytes":  # §14.1: range units are case-insensitive
        return None
    # §5.6.1: a recipient accepts empty list elements; at least one must be present.
    elements = [e.strip(_OWS) for e in range_set.split(",")]
    elements = [e for e in elements if e]
    if not elements or len(elements) > max_ranges:  # §14.2: a server may ignore many ranges
        return None
    specs = []
    for element in elements:
        spec = _parse_spec(element)
        if spec is None:
            return None  # §14.2: a syntactically invalid Range is ignored
        specs.append(spec)
    return specs


def _resolve(spec: _Spec, size: int) -> ByteRange | None:
    """The satisfiable part of one spec against a non-empty representation (§14.1.1)."""
    first, last = spec
    if first is None:
        count = _number(last or "0")
        return ByteRange(max(0, size - count), size - 1) if count > 0 else None
    start = _number(first)
    if start >= size:
        return None
    end = size - 1 if last is None else min(_number(last), size - 1)
    return ByteRange(start, end)


def _coalesce(ranges: list[ByteRange]) -> list[ByteRange]:
    """Sort and merge overlapping or adjacent ranges (§14.2: avoid amplification)."""
    merged: list[ByteRange] = []
    for r in sorted(ranges, key=lambda r: r.start):
        if merged and r.start <= merged[-1].end + 1:
            merged[-1] = ByteRange(merged[-1].start, max(merged[-1].end, r.end))
        else:
            merged.append(r)
    return merged


def _overlapping(ranges: list[ByteRange]) -> bool:
    ordered = sorted(ranges, key=lambda r: r.start)
    return any(b.start <= a.end for a, b in itertools.pairwise(ordered))


def evaluate_range(header: str | None, size: int, max_ranges: int = 16) -> RangeDecision:
    """Decide how to answer a Range header for a `size`-byte representation.

    FULL: no, malformed, non-bytes, or too many ranges. UNSATISFIABLE: no spec overlaps the
    representation. PARTIAL: at least one range, in client order unless some overlap (then
    sorted and merged). An empty representation cannot be sent as a 206, so a suffix range
    (the only kind §14.1.1 calls satisfiable there) gives FULL.
    """
    if header is None:
        return _FULL
    simple = _ONE_INT_RANGE.fullmatch(header)
    if simple is not None and size > 0 and max_ranges >= 1:
        start = int(simple[1])
        end = int(simple[2]) if simple[2] else size - 1
        if simple[2] and end < start:
            return _FULL  # §14.1.1: invalid, so the header is ignored
        if start >= size:
            return _UNSATISFIABLE
        return RangeDecision(RangeKind.PARTIAL, (ByteRange(start, min(end, size - 1)),))
    specs = _parse(header, max_ranges) if header else None
    if specs is None:
        return _FULL
    if size <= 0:
        suffix = any(first is None and _number(last or "0") > 0 for first, last in specs)
        return _FULL if suffix else _UNSATISFIABLE
    ranges = [r for r in (_resolve(spec, size) for spec in specs) if r is not None]
    if not ranges:
        return _UNSATISFIABLE
    # Disjoint ranges never add up to more than `size`, so merging overlaps is enough.
    if len(ranges) > 1 and _overlapping(ranges):
        ranges = _coalesce(ranges)
    return RangeDecision(RangeKind.PARTIAL, tuple(ranges))
