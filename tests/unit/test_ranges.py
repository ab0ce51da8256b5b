"""Range evaluation (RFC 9110 §14): the RFC's examples, hostile headers and properties."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artifactd.http.ranges import ByteRange, RangeDecision, RangeKind, evaluate_range

FULL = RangeDecision(RangeKind.FULL)
UNSATISFIABLE = RangeDecision(RangeKind.UNSATISFIABLE)


def partial(*ranges: tuple[int, int]) -> RangeDecision:
    return RangeDecision(RangeKind.PARTIAL, tuple(ByteRange(a, b) for a, b in ranges))


# RFC 9110 §14.1.2, for a representation of 10000 bytes.
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-499", partial((0, 499))),
        ("bytes=500-999", partial((500, 999))),
        ("bytes=-500", partial((9500, 9999))),
        ("bytes=9500-", partial((9500, 9999))),
        ("bytes=0-0,-1", partial((0, 0), (9999, 9999))),
        ("bytes= 0-999, 4500-5499, -1000", partial((0, 999), (4500, 5499), (9000, 9999))),
        ("bytes=500-600,601-999", partial((500, 600), (601, 999))),
        ("bytes=500-700,601-999", partial((500, 999))),
    ],
)
def test_rfc_9110_examples_select_the_documented_bytes(
    header: str, expected: RangeDecision
) -> None:
    assert evaluate_range(header, 10000) == expected


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-99", 1000, partial((0, 99))),
        ("bytes=0-0", 1, partial((0, 0))),
        ("bytes=0-", 1000, partial((0, 999))),
        ("bytes=999-", 1000, partial((999, 999))),
        ("bytes=990-2000", 1000, partial((990, 999))),
        ("bytes=-1000", 1000, partial((0, 999))),
        ("bytes=-5000", 1000, partial((0, 999))),
        ("BYTES=0-1", 1000, partial((0, 1))),
        ("Bytes=0-1", 1000, partial((0, 1))),
        ("bytes=\t0-1\t,\t5-6 ", 1000, partial((0, 1), (5, 6))),
        ("bytes=0-1,,2-3", 1000, partial((0, 1), (2, 3))),
        ("bytes=,0-1,", 1000, partial((0, 1))),
        ("bytes=5-6,0-1", 1000, partial((5, 6), (0, 1))),
        ("bytes=0001-0002", 1000, partial((1, 2))),
        ("bytes=0-99999999999999999999999999", 1000, partial((0, 999))),
        ("bytes=-9223372036854775808", 1000, partial((0, 999))),
        ("bytes=-" + "9" * 5000, 1000, partial((0, 999))),
        ("bytes=" + "0" * 5000 + "1-2", 1000, partial((1, 2))),
        ("bytes=2000-,0-1", 1000, partial((0, 1))),
    ],
)
def test_satisfiable_ranges_are_resolved_against_the_size(
    header: str, size: int, expected: RangeDecision
) -> None:
    assert evaluate_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-5,3-8", 1000, partial((0, 8))),
        ("bytes=10-20,0-4,5-9", 1000, partial((10, 20), (0, 4), (5, 9))),
        ("bytes=10-20,0-4,5-10", 1000, partial((0, 20))),
        ("bytes=0-,0-,0-", 1000, partial((0, 999))),
        ("bytes=-500,0-", 1000, partial((0, 999))),
        ("bytes=0-1,0-1", 1000, partial((0, 1))),
        ("bytes=900-,-200,0-10", 1000, partial((0, 10), (800, 999))),
    ],
)
def test_overlapping_ranges_are_sorted_and_merged_never_amplified(
    header: str, size: int, expected: RangeDecision
) -> None:
    assert evaluate_range(header, size) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes",
        "bytes=",
        "bytes=,",
        "bytes= , ",
        "items=0-1",
        "bytes 0-1",
        "bytes =0-1",
        "=0-1",
        "bytes=-",
        "bytes=1",
        "bytes=a-b",
        "bytes=0x10-0x20",
        "bytes=+1-2",
        "bytes=-1-2",
        "bytes=1--2",
        "bytes=0-1-2",
        "bytes=5-4",
        "bytes=0-1,5-4",
        "bytes=0-1,junk",
        "bytes=0 - 1",
        "bytes=0-1;q=1",
        "bytes=٣-٤",
        "bytes=²-³",
        "bytes=100000000000000000001-100000000000000000000",
    ],
)
def test_malformed_or_foreign_headers_are_ignored(header: str | None) -> None:
    assert evaluate_range(header, 1000) == FULL


@pytest.mark.parametrize(
    "header",
    [
        "bytes=1000-",
        "bytes=1000-2000",
        "bytes=-0",
        "bytes=1000-,2000-3000,-0",
        "bytes=99999999999999999999999-",
    ],
)
def test_ranges_outside_the_representation_are_unsatisfiable(header: str) -> None:
    assert evaluate_range(header, 1000) == UNSATISFIABLE


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=-1", FULL),
        ("bytes=-500,0-1", FULL),
        ("bytes=0-", UNSATISFIABLE),
        ("bytes=0-0", UNSATISFIABLE),
        ("bytes=-0", UNSATISFIABLE),
        ("bytes=junk", FULL),
    ],
)
def test_an_empty_file_is_sent_whole_for_a_suffix_range_and_never_as_a_206(
    header: str, expected: RangeDecision
) -> None:
    assert evaluate_range(header, 0) == expected


def test_more_ranges_than_the_limit_are_ignored() -> None:
    header = "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 34, 2))
    assert evaluate_range(header, 1000, max_ranges=16) == FULL
    assert evaluate_range(header, 1000, max_ranges=17).kind is RangeKind.PARTIAL


def test_exactly_the_limit_of_ranges_is_honoured() -> None:
    header = "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 32, 2))
    decision = evaluate_range(header, 1000, max_ranges=16)
    assert len(decision.ranges) == 16


def test_empty_list_elements_do_not_count_towards_the_limit() -> None:
    assert evaluate_range("bytes=0-1" + "," * 100, 1000, max_ranges=1) == partial((0, 1))


def test_thousands_of_ranges_or_huge_numbers_are_answered_quickly() -> None:
    headers = [
        "bytes=" + ",".join(f"{i}-{i}" for i in range(1000)),
        "bytes=" + "0-1," * 100_000,
        "bytes=" + "1" * 100_000 + "-",
        "bytes=0-" + "9" * 100_000,
    ]
    started = time.perf_counter()
    for header in headers:
        evaluate_range(header, 1000)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("byte_range", "size", "length", "content_range"),
    [
        (ByteRange(0, 99), 1000, 100, "bytes 0-99/1000"),
        (ByteRange(0, 0), 1, 1, "bytes 0-0/1"),
        (ByteRange(9500, 9999), 10000, 500, "bytes 9500-9999/10000"),
    ],
)
def test_a_byte_range_knows_its_length_and_content_range(
    byte_range: ByteRange, size: int, length: int, content_range: str
) -> None:
    assert byte_range.length == length
    assert byte_range.content_range(size) == content_range


@pytest.mark.parametrize(("start", "end"), [(-1, 5), (5, 4)])
def test_an_inverted_or_negative_byte_range_cannot_be_built(start: int, end: int) -> None:
    with pytest.raises(ValueError):
        ByteRange(start, end)


RANGE_ALPHABET = st.sampled_from(list("0123456789-, \t=bytesBYTES;x٣"))
range_headers = st.one_of(
    st.text(),
    st.text(RANGE_ALPHABET, max_size=60),
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(0, 2**70)),
            st.one_of(st.none(), st.integers(0, 2**70)),
        ),
        min_size=1,
        max_size=20,
    ).map(
        lambda specs: (
            "bytes="
            + ",".join(f"{'' if a is None else a}-{'' if b is None else b}" for a, b in specs)
        )
    ),
)


@given(header=range_headers, size=st.integers(0, 2**64), max_ranges=st.integers(1, 20))
def test_any_header_gives_in_bounds_disjoint_ranges_that_never_exceed_the_size(
    header: str, size: int, max_ranges: int
) -> None:
    decision = evaluate_range(header, size, max_ranges)
    if decision.kind is not RangeKind.PARTIAL:
        assert decision.ranges == ()
        return
    assert 1 <= len(decision.ranges) <= max_ranges
    for r in decision.ranges:
        assert 0 <= r.start <= r.end < size
    ordered = sorted(decision.ranges, key=lambda r: r.start)
    assert all(a.end < b.start for a, b in itertools.pairwise(ordered))
    assert sum(r.length for r in decision.ranges) <= size


@given(first=st.integers(0, 10**6), last=st.integers(0, 10**6), size=st.integers(1, 10**6))
def test_a_single_int_range_matches_a_reference_implementation(
    first: int, last: int, size: int
) -> None:
    decision = evaluate_range(f"bytes={first}-{last}", size)
    if last < first:
        assert decision == FULL
    elif first >= size:
        assert decision == UNSATISFIABLE
    else:
        assert decision == partial((first, min(last, size - 1)))


digit_strings = st.one_of(
    st.integers(0, 2**64).map(str),
    st.from_regex(r"[0-9]{1,20}", fullmatch=True),  # leading zeros, 19 and 20 digits
)


@given(
    first=digit_strings,
    last=st.one_of(st.just(""), digit_strings),
    size=st.one_of(st.integers(0, 10**6), st.integers(0, 2**64)),
    max_ranges=st.integers(1, 20),
)
def test_the_one_range_shortcut_agrees_with_the_general_parser(
    first: str, last: str, size: int, max_ranges: int
) -> None:
    # A trailing empty list element means the same (§5.6.1) but never takes the shortcut.
    header = f"bytes={first}-{last}"
    assert evaluate_range(header, size, max_ranges) == evaluate_range(
        header + ",", size, max_ranges
    )
