"""The header fields of the IETF "Resumable Uploads for HTTP" draft (pure functions).

Two interop versions are spoken (the draft's "Draft Version Identification" appendix):
6, of draft-ietf-httpbis-resumable-upload-04 and -05 (what Apple's URLSession and tusd
speak), and 8, of -09 to -11 (the latest published, March 2026). Their fields are RFC 9651
Structured Fields: `Upload-Complete` a Boolean Item, `Upload-Offset`, `Upload-Length` and
`Upload-Draft-Interop-Version` Integer Items, `Upload-Limit` a Dictionary of Integers
(-11 §4.1; -05 §8). A value of another type makes the field absent ("Other values MUST
cause the entire header field to be ignored", -11 §4.1.1, §4.1.2, §4.1.3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Appendix "Draft Version Identification": 6 (-04, -05) and 8 (-09, -10, -11).
INTEROP_V6 = 6
INTEROP_V8 = 8
INTEROP_VERSIONS = (INTEROP_V6, INTEROP_V8)
# -11 §5 (-05 §4, "Upload Creation"): the 104 status code and its reason phrase.
UPLOAD_RESUMPTION_SUPPORTED = 104
RESUMPTION_REASON = "Upload Resumption Supported"
# -11 §6 (-05 §9): the media type of a PATCH's piece.
PARTIAL_UPLOAD = "application/partial-upload"
# -11 §7 (-05 §10): RFC 9457 problem types.
PROBLEM_JSON = "application/problem+json"
MISMATCHING_OFFSET = "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
COMPLETED_UPLOAD = "https://iana.org/assignments/http-problem-types#completed-upload"
INCONSISTENT_LENGTH = "https://iana.org/assignments/http-problem-types#inconsistent-upload-length"

# RFC 9651 §3.1.2 parameters after a bare item: `;key[=bare-item]`, keys lowercase. Their
# values are not used here, only recognised so that a well-formed Item is not ignored.
_KEY = r"[a-z*][a-z0-9_.*-]*"
_BARE = (
    r'(?:-?[0-9]{1,12}\.[0-9]{1,3}|-?[0-9]{1,15}|"(?:[\x20-\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"'
    r"|[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*|:[A-Za-z0-9+/=]*:|\?[01])"
)
_PARAMETERS = rf"(?:;[ ]*{_KEY}(?:={_BARE})?)*"
_BOOLEAN = re.compile(rf"[ ]*\?([01]){_PARAMETERS}[ ]*")
# §3.3.1: at most 15 digits, so at most 999,999,999,999,999.
_INTEGER = re.compile(rf"[ ]*(-?[0-9]{{1,15}}){_PARAMETERS}[ ]*")


def parse_boolean(value: str | None) -> bool | None:
    """An RFC 9651 Boolean Item (`?0`, `?1`, parameters allowed); None when absent or not
    a Boolean (several field lines, joined by commas, are not one Item either)."""
    if value is None:
        return None
    match = _BOOLEAN.fullmatch(value)
    return None if match is None else match[1] == "1"


def parse_integer(value: str | None) -> int | None:
    """A non-negative RFC 9651 Integer Item; None when absent, negative or not an Integer."""
    if value is None:
        return None
    match = _INTEGER.fullmatch(value)
    if match is None:
        return None
    number = int(match[1])
    return number if number >= 0 else None


def interop_version(value: str | None) -> int | None:
    """The supported interop version a request names; None without one we speak (then no
    104: "MUST NOT send a 104 ... when the interop version ... is missing or mismatching")."""
    version = parse_integer(value)
    return version if version in INTEROP_VERSIONS else None


def serialize_boolean(value: bool) -> str:
    return "?1" if value else "?0"


def upload_limit(version: int, *, max_size: int, lifetime: int | None) -> str:
    """The `Upload-Limit` Dictionary (RFC 9651 §4.1.2): `max-size`, and the remaining
    lifetime in seconds, named `expires` in interop version 6 (-05 §8.2) and `max-age`
    from 7 on (-11 §4.1.4, "Rename `expires` limit to `max-age`")."""
    members = [f"max-size={max_size}"]
    if lifetime is not None:
        key = "expires" if version == INTEROP_V6 else "max-age"
        members.append(f"{key}={max(lifetime, 0)}")
    return ", ".join(members)


def problem(type_uri: str, title: str, status: int, **members: int) -> dict[str, object]:
    """An RFC 9457 problem details object (§3.1 members, plus the type's extensions:
    `expected-offset` and `provided-offset` for a mismatching offset, -11 §7.1)."""
    document: dict[str, object] = {"type": type_uri, "title": title, "status": status}
    document.update({name.replace("_", "-"): value for name, value in members.items()})
    return document


def interim_response(headers: Mapping[str, str]) -> bytes:
    """The HTTP/1.1 bytes of a `104 Upload Resumption Supported` interim response
    (RFC 9112 §4: status line, then fields, then an empty line)."""
    lines = [f"HTTP/1.1 {UPLOAD_RESUMPTION_SUPPORTED} {RESUMPTION_REASON}"]
    for name, value in headers.items():
        if any(c in value for c in "\r\n\0") or any(c in name for c in "\r\n\0: "):
            raise ValueError(f"unusable header field {name!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
