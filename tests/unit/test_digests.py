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
from artifactd.http.digests import etag_for_digest, expected_sha256, repr_digest_header

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
