"""Content digests (RFC 9530, legacy RFC 3230, X-Checksum-Sha256) and digest-based ETags.

Reads the SHA-256 a client expects for an upload and the digest fields a client wants
(Want-Digest, Want-Repr-Digest); formats the digest headers we send.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import NamedTuple

from artifactd.errors import InvalidDigestError
from artifactd.http.negotiation import parse_weighted

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")

# RFC 8941 (with RFC 9651's dates and display strings) just enough to walk a Dictionary
# (§3.2) and skip the members we do not care about, whatever their type.
_KEY = r"[a-z*][a-z0-9_.*-]*"
_BARE = (
    r"-?[0-9]{1,12}\.[0-9]{1,3}|-?[0-9]{1,15}"  # decimal, integer
    r'|"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"'  # string
    r"|[A-Za-z*][!#$%&'*+.^_`|~0-9A-Za-z:/-]*"  # token
    r"|:[A-Za-z0-9+/=]*:"  # byte sequence
    r"|\?[01]|@-?[0-9]{1,15}"  # boolean, date
    r'|%"(?:[\x20\x21\x23\x24\x26-\x5b\x5d-\x7e]|%[0-9a-f]{2})*"'  # display string
)
_PARAMS = rf"(?:; *{_KEY}(?:=(?:{_BARE}))?)*"
_ITEM = rf"(?:{_BARE}){_PARAMS}"
_INNER_LIST = rf"\( *(?:{_ITEM}(?: +{_ITEM})*)? *\){_PARAMS}"
_MEMBER = re.compile(rf"(?P<key>{_KEY})(?:=(?P<value>{_BARE}|{_INNER_LIST}))?{_PARAMS}")
_SEPARATOR = re.compile(r"[ \t]*,[ \t]*")


def _digest_bytes(encoded: str, source: str) -> str:
    """Hex for a base64 SHA-256 value; RFC 8941 §4.2.7 says to tolerate missing padding."""
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidDigestError(f"{source}: sha-256 value is not base64") from None
    if len(raw) != 32:
        raise InvalidDigestError(f"{source}: sha-256 value is not 32 bytes")
    return raw.hex()


def _dictionary(value: str, source: str) -> list[tuple[str, str]]:
    """The members of an RFC 8941 Dictionary (§3.2) as (key, bare value) pairs in order,
    parameters dropped; a member without a value (boolean true) has "". Raises
    InvalidDigestError when `value` is not a Dictionary."""
    text, members, pos = value.strip(" "), [], 0  # RFC 8941 §4.2: discard surrounding SP
    while pos < len(text):
        member = _MEMBER.match(text, pos)
        if member is None:
            raise InvalidDigestError(f"{source}: not a structured field dictionary")
        members.append((member["key"], member["value"] or ""))
        pos = member.end()
        if pos < len(text):
            separator = _SEPARATOR.match(text, pos)
            if separator is None or separator.end() == len(text):
                raise InvalidDigestError(f"{source}: not a structured field dictionary")
            pos = separator.end()
    return members


def _structured_sha256(value: str, source: str) -> str | None:
    """The sha-256 member of a Repr-Digest / Content-Digest Dictionary (RFC 9530 §2-3)."""
    found = None
    for key, item in _dictionary(value, source):
        if key == "sha-256":  # duplicate keys: the last one wins (§3.2)
            if not (len(item) >= 2 and item[0] == item[-1] == ":"):
                raise InvalidDigestError(f"{source}: sha-256 value is not a byte sequence")
            found = _digest_bytes(item[1:-1], source)
    return found


def _legacy_sha256(value: str) -> str | None:
    """The SHA-256 instance of an RFC 3230 `Digest` list (algorithm names any case)."""
    found = None
    for element in value.split(","):
        algorithm, _, encoded = element.partition("=")
        if algorithm.strip(" \t").lower() == "sha-256":
            found = _digest_bytes(encoded.strip(" \t"), "Digest")
    return found


def _checksum_sha256(value: str) -> str:
    text = value.strip(" \t")
    if not _HEX64.fullmatch(text):
        raise InvalidDigestError("X-Checksum-Sha256: expected 64 hexadecimal digits")
    return text.lower()


def _field_values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of a header: a multidict's repeated lines, else `get`'s single value."""
    getall = getattr(headers, "getall", None)
    if callable(getall):
        return [str(value) for value in getall(name, [])]
    value = headers.get(name)
    return [] if value is None else [value]


# Every field `expected_sha256` reads.
DIGEST_FIELDS = ("Repr-Digest", "Content-Digest", "Digest", "X-Checksum-Sha256")


def expected_sha256(headers: Mapping[str, str]) -> str | None:
    """The lowercase hex SHA-256 the client announced for the content, or None.

    A malformed sha-256 entry, an unparseable Repr-/Content-Digest, or headers that disagree
    raise InvalidDigestError. Other algorithms are ignored.
    """
    for name in DIGEST_FIELDS:
        if name in headers:
            break
    else:
        return None  # most uploads declare nothing: no field is split or parsed
    found: set[str] = set()
    for name in ("Repr-Digest", "Content-Digest"):
        # RFC 9110 §5.3: repeated lines of a list-based field combine with commas.
        values = [value for value in _field_values(headers, name) if value.strip(" \t")]
        digest = _structured_sha256(", ".join(values), name)
        if digest is not None:
            found.add(digest)
    for value in _field_values(headers, "Digest"):
        digest = _legacy_sha256(value)
        if digest is not None:
            found.add(digest)
    for value in _field_values(headers, "X-Checksum-Sha256"):
        found.add(_checksum_sha256(value))
    if len(found) > 1:
        raise InvalidDigestError("conflicting digests")
    return found.pop() if found else None


def _checked_hex(sha256_hex: str) -> str:
    if not _HEX64.fullmatch(sha256_hex):
        raise InvalidDigestError(f"not a SHA-256 hex digest: {sha256_hex!r}")
    return sha256_hex.lower()


def repr_digest_header(sha256_hex: str) -> str:
    """`sha-256=:<base64>:`, a Repr-Digest value (RFC 9530 §3, RFC 8941 byte sequence)."""
    return _repr_digest(_checked_hex(sha256_hex))


def _repr_digest(checked_hex: str) -> str:
    return f"sha-256=:{base64.b64encode(bytes.fromhex(checked_hex)).decode('ascii')}:"


def etag_and_repr_digest(sha256_hex: str) -> tuple[str, str]:
    """`etag_for_digest` and `repr_digest_header` of one digest, its hex checked once (every
    download of a version not seen before needs both)."""
    checked = _checked_hex(sha256_hex)
    return _etag(checked), _repr_digest(checked)


def legacy_digest_header(sha256_hex: str) -> str:
    """`SHA-256=<base64>`, an RFC 3230 `Digest` value (what aria2c checks)."""
    raw = bytes.fromhex(_checked_hex(sha256_hex))
    return f"SHA-256={base64.b64encode(raw).decode('ascii')}"


class DigestFields(NamedTuple):
    """Which digest fields an answer carries (SHA-256, the one digest we keep)."""

    repr: bool  # Repr-Digest (RFC 9530), with X-Checksum-Sha256
    legacy: bool  # Digest (RFC 3230), only when asked for by Want-Digest


DEFAULT_DIGESTS = DigestFields(repr=True, legacy=False)


def wanted_digests(want_digest: str | None, want_repr_digest: str | None) -> DigestFields:
    """The digest fields for a request's `Want-Digest` and `Want-Repr-Digest`.

    RFC 3230 §4.3.1: Want-Digest lists algorithms (any case, §4.1.1) with qvalues; SHA-256
    with a weight above 0 gets `Digest: SHA-256=<base64>`. RFC 9530 §4: Want-Repr-Digest
    is a Dictionary of algorithms with weights 0 to 10; we have only sha-256, so a request
    that wants others still gets it (§4: digests may be sent unasked), but `sha-256=0`
    ("not acceptable") gets no Repr-Digest. A malformed Want-Repr-Digest is ignored.
    """
    legacy = want_digest is not None and parse_weighted(want_digest).get("sha-256", 0.0) > 0
    return DigestFields(repr=not _refuses_sha256(want_repr_digest), legacy=legacy)


def _refuses_sha256(want_repr_digest: str | None) -> bool:
    if want_repr_digest is None:
        return False
    try:
        members = _dictionary(want_repr_digest, "Want-Repr-Digest")
    except InvalidDigestError:
        return False
    weights = {key: value for key, value in members}  # the last of a duplicate key wins
    weight = weights.get("sha-256")
    if weight is None or not weight.isascii() or not weight.isdigit() or int(weight) > 10:
        return False
    return int(weight) == 0


def etag_for_digest(sha256_hex: str) -> str:
    """A strong ETag (RFC 9110 §8.8.3) from the content digest: the same bytes give the
    same ETag on every node; 128 bits are plenty to tell versions apart."""
    return _etag(_checked_hex(sha256_hex))


def _etag(checked_hex: str) -> str:
    return f'"{checked_hex[:32]}"'
