"""Expected-digest headers (RFC 9530, RFC 3230, X-Checksum-Sha256) and digest ETags."""

from __future__ import annotations

import base64
import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from artifactd.errors import InvalidDigestError
from artifactd.http.digests import (
    DigestFields,
    etag_for_digest,
    expected_sha256,
    legacy_digest_header,
    repr_digest_header,
    wanted_digests,
)

HEX = hashlib.sha256(b"hello").hexdigest()
B64 = base64.b64encode(bytes.fromhex(HEX)).decode()
OTHER_HEX = hashlib.sha256(b"other").hexdigest()
OTHER_B64 = base64.b64encode(bytes.fromhex(OTHER_HEX)).decode()
SHA512_B64 = base64.b64encode(hashlib.sha512(b"hello").digest()).decode()


def test_repr_digest_is_a_structured_byte_sequence() -> None:
    assert repr_digest_header(HEX) == f"sha-256=:{B64}:"
    assert repr_digest_header(HEX.upper()) == f"sha-256=:{B64}:"


def test_the_etag_is_the_quoted_first_half_of_the_digest() -> None:
    assert etag_for_digest(HEX) == f'"{HEX[:32]}"'


@pytest.mark.parametrize("bad", ["", "abc", HEX[:-1], HEX + "0", "g" * 64])
def test_digest_formatting_refuses_anything_but_sha256_hex(bad: str) -> None:
    with pytest.raises(InvalidDigestError):
        repr_digest_header(bad)
    with pytest.raises(InvalidDigestError):
        etag_for_digest(bad)


@pytest.mark.parametrize(
    "headers",
    [
        [("Repr-Digest", f"sha-256=:{B64}:")],
        [("repr-digest", f"sha-256=:{B64}:")],
        [("Content-Digest", f"sha-256=:{B64}:")],
        [("Repr-Digest", f"sha-512=:{SHA512_B64}:, sha-256=:{B64}:")],
        [("Repr-Digest", f"sha-256=:{B64}:;q=1, sha-512=:{SHA512_B64}:")],
        [("Repr-Digest", f'md5=token, x=("a" 1;p);q, y=?1, z, sha-256=:{B64}:')],
        [("Repr-Digest", f"sha-256=:{B64.rstrip('=')}:")],
        [("Repr-Digest", f"sha-512=:{SHA512_B64}:"), ("Repr-Digest", f"sha-256=:{B64}:")],
        [("Repr-Digest", f"sha-256=:{OTHER_B64}:, sha-256=:{B64}:")],
        [("Digest", f"SHA-256={B64}")],
        [("Digest", f"sha-256={B64}")],
        [("Digest", f"MD5=abc, SHA-256={B64}, SHA-512={SHA512_B64}")],
        [("X-Checksum-Sha256", HEX)],
        [("x-checksum-sha256", HEX.upper())],
        [("X-Checksum-Sha256", f" {HEX} ")],
        [
            ("Repr-Digest", f"sha-256=:{B64}:"),
            ("Content-Digest", f"sha-256=:{B64}:"),
            ("Digest", f"SHA-256={B64}"),
            ("X-Checksum-Sha256", HEX),
        ],
    ],
)
def test_the_expected_sha256_is_found_in_any_supported_header(
    headers: list[tuple[str, str]],
) -> None:
    assert expected_sha256(CIMultiDict(headers)) == HEX


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("Content-Type", "text/plain")],
        [("Repr-Digest", f"sha-512=:{SHA512_B64}:")],
        [("Repr-Digest", "")],
        [("Digest", "MD5=XUFAKrxLKna5cZ2REBfFkg==")],
        [("Digest", "")],
    ],
)
def test_no_sha256_means_no_expectation(headers: list[tuple[str, str]]) -> None:
    assert expected_sha256(CIMultiDict(headers)) is None


@pytest.mark.parametrize(
    "headers",
    [
        [("Repr-Digest", "sha-256=:not base64!:")],
        [("Repr-Digest", f"sha-256=:{SHA512_B64}:")],
        [("Repr-Digest", f"sha-256={HEX}")],
        [("Repr-Digest", "sha-256")],
        [("Repr-Digest", f"sha-256=:{B64}")],
        [("Repr-Digest", f"SHA-256=:{B64}:")],
        [("Repr-Digest", f"sha-256=:{B64}:,")],
        [("Repr-Digest", f"sha-256=:{B64}: junk")],
        [("Content-Digest", f"sha-256=:{B64[:-4]}:")],
        [("Digest", f"SHA-256={HEX}")],
        [("Digest", "SHA-256=")],
        [("X-Checksum-Sha256", HEX[:-1])],
        [("X-Checksum-Sha256", B64)],
        [("X-Checksum-Sha256", "")],
    ],
)
def test_a_malformed_sha256_value_is_an_invalid_digest(headers: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidDigestError):
        expected_sha256(CIMultiDict(headers))


@pytest.mark.parametrize(
    "headers",
    [
        [("Repr-Digest", f"sha-256=:{B64}:"), ("X-Checksum-Sha256", OTHER_HEX)],
        [("Content-Digest", f"sha-256=:{OTHER_B64}:"), ("Digest", f"SHA-256={B64}")],
        [("X-Checksum-Sha256", HEX), ("X-Checksum-Sha256", OTHER_HEX)],
    ],
)
def test_headers_that_disagree_are_conflicting_digests(headers: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidDigestError, match="conflicting digests"):
        expected_sha256(CIMultiDict(headers))


def test_a_plain_mapping_is_accepted_too() -> None:
    assert expected_sha256({"X-Checksum-Sha256": HEX}) == HEX


@given(st.binary(min_size=32, max_size=32))
def test_repr_digest_round_trips_through_expected_sha256(digest: bytes) -> None:
    headers = CIMultiDict([("Repr-Digest", repr_digest_header(digest.hex()))])
    assert expected_sha256(headers) == digest.hex()


@given(st.text(max_size=200))
def test_any_header_value_is_parsed_or_rejected_as_an_invalid_digest(value: str) -> None:
    for name in ("Repr-Digest", "Digest", "X-Checksum-Sha256"):
        with contextlib.suppress(InvalidDigestError):
            expected_sha256(CIMultiDict([(name, value)]))


def test_legacy_digest_header_is_rfc_3230_base64() -> None:
    assert legacy_digest_header(HEX) == f"SHA-256={B64}"


@pytest.mark.parametrize(
    ("want_digest", "want_repr_digest", "expected"),
    [
        (None, None, DigestFields(repr=True, legacy=False)),  # as always: Repr-Digest
        ("SHA-256", None, DigestFields(repr=True, legacy=True)),
        ("sha-256", None, DigestFields(repr=True, legacy=True)),  # names: any case (§4.1.1)
        ("SHA-512;q=1, SHA-256;q=1, SHA;q=0.1", None, DigestFields(repr=True, legacy=True)),
        ("MD5, Sha-256;q=0.3", None, DigestFields(repr=True, legacy=True)),
        ("SHA-256;q=0", None, DigestFields(repr=True, legacy=False)),  # not acceptable
        ("SHA-256;q=0.000", None, DigestFields(repr=True, legacy=False)),
        ("MD5, SHA", None, DigestFields(repr=True, legacy=False)),  # none we have
        ("", None, DigestFields(repr=True, legacy=False)),
        (None, "sha-256=10", DigestFields(repr=True, legacy=False)),
        (None, "sha-512=10, sha-256=1", DigestFields(repr=True, legacy=False)),
        (None, "sha-512=3", DigestFields(repr=True, legacy=False)),  # ours, as we lack it
        (None, "sha-256=0", DigestFields(repr=False, legacy=False)),  # "not acceptable"
        (None, "sha-256=0, sha-512=5", DigestFields(repr=False, legacy=False)),
        (None, "sha-256=x", DigestFields(repr=True, legacy=False)),  # malformed: ignored
        (None, "sha-256=11", DigestFields(repr=True, legacy=False)),  # out of range: ignored
        (None, "sha-256=0;p=1", DigestFields(repr=False, legacy=False)),  # parameters skipped
        ("SHA-256", "sha-256=0", DigestFields(repr=False, legacy=True)),  # each on its own
    ],
)
def test_wanted_digest_fields(
    want_digest: str | None, want_repr_digest: str | None, expected: DigestFields
) -> None:
    assert wanted_digests(want_digest, want_repr_digest) == expected


@given(st.text(), st.text())
def test_wanted_digest_fields_never_raise(want_digest: str, want_repr_digest: str) -> None:
    assert isinstance(wanted_digests(want_digest, want_repr_digest), DigestFields)
