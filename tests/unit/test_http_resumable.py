"""The IETF resumable-upload draft's fields (artifactd/http/resumable.py), table-driven and
as properties."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artifactd.http import resumable as fields


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("?1", True),
        ("?0", False),
        (" ?1 ", True),
        ("?1;a=1", True),
        ('?0;note="x";flag', False),
        (None, None),
        ("", None),
        ("?2", None),
        ("1", None),
        ("true", None),
        ("?1, ?0", None),  # two field lines joined: not one Item
        ("?1;A=1", None),  # keys are lowercase
        ("? 1", None),
    ],
)
def test_boolean(value: str | None, expected: bool | None) -> None:
    assert fields.parse_boolean(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("42", 42),
        ("007", 7),
        (" 5 ", 5),
        ("5;unit=bytes", 5),
        ("999999999999999", 999_999_999_999_999),
        ("1000000000000000", None),  # 16 digits: not an Integer (RFC 9651 §3.3.1)
        ("-1", None),  # the draft's integers are non-negative
        ("1.5", None),
        ("1,2", None),
        ("", None),
        ("abc", None),
        (None, None),
    ],
)
def test_integer(value: str | None, expected: int | None) -> None:
    assert fields.parse_integer(value) == expected


@given(st.booleans(), st.sampled_from(["", ";a", ";a=1", ';k="v"', ";x=?0"]))
def test_boolean_round_trips(value: bool, parameters: str) -> None:
    assert fields.parse_boolean(fields.serialize_boolean(value) + parameters) is value


@given(st.integers(min_value=0, max_value=999_999_999_999_999))
def test_integer_round_trips(value: int) -> None:
    assert fields.parse_integer(str(value)) == value


@given(st.text(max_size=20))
def test_parsers_never_raise(text: str) -> None:
    boolean = fields.parse_boolean(text)
    integer = fields.parse_integer(text)
    assert boolean in (True, False, None)
    assert integer is None or integer >= 0


@pytest.mark.parametrize(
    ("value", "expected"), [("6", 6), ("8", 8), ("5", None), ("7", None), ("x", None), (None, None)]
)
def test_interop_versions_spoken(value: str | None, expected: int | None) -> None:
    assert fields.interop_version(value) == expected


def test_upload_limit_names_the_lifetime_as_each_version_does() -> None:
    assert fields.upload_limit(6, max_size=10, lifetime=60) == "max-size=10, expires=60"
    assert fields.upload_limit(8, max_size=10, lifetime=60) == "max-size=10, max-age=60"
    assert fields.upload_limit(8, max_size=10, lifetime=-5) == "max-size=10, max-age=0"
    assert fields.upload_limit(8, max_size=10, lifetime=None) == "max-size=10"


def test_problem_has_the_type_and_its_members() -> None:
    document = fields.problem(
        fields.MISMATCHING_OFFSET, "t", 409, expected_offset=3, provided_offset=5
    )
    assert json.loads(json.dumps(document)) == {
        "type": "https://iana.org/assignments/http-problem-types#mismatching-upload-offset",
        "title": "t",
        "status": 409,
        "expected-offset": 3,
        "provided-offset": 5,
    }


def test_interim_response_bytes() -> None:
    raw = fields.interim_response({"Location": "/uploads/x", "Upload-Draft-Interop-Version": "6"})
    assert raw == (
        b"HTTP/1.1 104 Upload Resumption Supported\r\nLocation: /uploads/x\r\n"
        b"Upload-Draft-Interop-Version: 6\r\n\r\n"
    )
    with pytest.raises(ValueError):
        fields.interim_response({"Location": "/a\r\nX: y"})
