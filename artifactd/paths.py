"""Artifact path safety: turn the raw, percent-encoded URL tail into a safe relative path.

Everything that could escape the storage root or confuse a filesystem is refused here;
`.` segments, which name the same resource as the path without them, are dropped.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from artifactd.errors import InvalidPathError

INTERNAL_DIR = ".artifactd"
MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 1024

_HEX = frozenset("0123456789abcdefABCDEF")
_FORBIDDEN_AFTER_DECODING = ("/", "\\", "\x00")
# A `.` segment as a URL may spell it: RFC 3986 §2.3 lets a client encode an unreserved
# character, and §6.2.2.2 says `%2E` and `.` are the same.
_DOT_SEGMENTS = frozenset((".", "%2e", "%2E"))
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1: one C-level scan


def _percent_decode(text: str) -> str:
    """Decode %XX escapes exactly once (RFC 3986 §2.1), strictly: a stray '%' or invalid
    UTF-8 (overlong forms such as %c0%ae included) is an error, never guessed at."""
    if "%" not in text:  # the usual segment: nothing to decode, only to check
        text.encode()  # a lone surrogate raises UnicodeEncodeError
        return text
    literal, *escaped = text.split("%")
    data = bytearray(literal.encode())  # a lone surrogate raises UnicodeEncodeError
    for chunk in escaped:
        if len(chunk) < 2 or chunk[0] not in _HEX or chunk[1] not in _HEX:
            raise InvalidPathError("invalid percent-escape")
        data.append(int(chunk[:2], 16))
        data += chunk[2:].encode()
    return data.decode()


def _utf8_length(text: str) -> int:
    try:
        return len(text.encode())
    except UnicodeEncodeError:  # lone surrogates, e.g. from a surrogateescape'd request
        raise InvalidPathError("path is not valid UTF-8") from None


def _check_segment(segment: str) -> None:
    """Refuse one decoded segment unless it is a plain, harmless name."""
    if not segment:
        raise InvalidPathError("empty path segment")
    if segment in (".", ".."):
        raise InvalidPathError("dot segment")  # RFC 3986 §5.2.4 would resolve it
    if "/" in segment:
        raise InvalidPathError("encoded '/' in a path segment")
    if "\\" in segment:
        raise InvalidPathError("backslash in path")
    if _CONTROL.search(segment):
        raise InvalidPathError("control character in path")
    if _utf8_length(segment) > MAX_SEGMENT_BYTES:
        raise InvalidPathError(f"path segment longer than {MAX_SEGMENT_BYTES} bytes")
    # Something downstream (a proxy, a client, a script) may decode again: make sure no
    # number of further decodings turns the name into a dot segment or a separator.
    # Each decoding that changes the text shortens it, so this loop is bounded.
    text = segment
    while "%" in text:
        decoded = unquote(text, errors="surrogateescape")
        if decoded == text:
            break
        text = decoded
        if text in (".", "..") or any(c in text for c in _FORBIDDEN_AFTER_DECODING):
            raise InvalidPathError("multiply-encoded dot segment or separator")


def _plain(raw: str) -> bool:
    """Whether `raw` is already a normalised, valid path: ASCII without `%`, `\\` or
    control characters, within the length limits, every segment a plain name (no empty,
    `.` or `..` one). Most paths are; the general steps are for the rest."""
    if "%" in raw or "\\" in raw or not raw.isascii() or len(raw) > MAX_PATH_BYTES:
        return False
    if _CONTROL.search(raw):
        return False
    for segment in raw.split("/"):
        if not segment or segment == "." or segment == ".." or len(segment) > MAX_SEGMENT_BYTES:
            return False
    return True


def parse_artifact_path(raw: str) -> str:
    """The normalised artifact path for `raw`, the percent-encoded URL tail after `/files/`.

    `.` segments are dropped (RFC 3986 §5.2.4 and §6.2.2.3: `a/./b` is `a/b`, `a/.` is
    `a/`), as is a trailing '/' (a directory request): the root is ''. Raises
    InvalidPathError for anything unsafe or malformed (see SPEC "Artifact paths"), `..`
    segments included: resolving them would let a URL climb out of its directory.
    """
    if raw.startswith("/"):
        raise InvalidPathError("absolute path")
    raw = raw.removesuffix("/")
    if not raw:
        return ""
    if _plain(raw):
        return raw  # what the general steps below return for it, in a fraction of the time
    try:
        segments = [_percent_decode(segment) for segment in raw.split("/")]
    except UnicodeError:
        raise InvalidPathError("path is not valid UTF-8") from None
    segments = [segment for segment in segments if segment != "."]
    path = "/".join(segments)
    if _utf8_length(path) > MAX_PATH_BYTES:
        raise InvalidPathError(f"path longer than {MAX_PATH_BYTES} bytes")
    for segment in segments:
        _check_segment(segment)
    return path


def names_directory(raw: str) -> bool:
    """Whether `raw`, a URL tail as `parse_artifact_path` takes it, names a directory: it is
    empty, ends with '/', or ends with a `.` segment (which RFC 3986 §5.2.4 turns into a
    trailing '/')."""
    return not raw or raw.endswith("/") or raw.rpartition("/")[2] in _DOT_SEGMENTS


def is_internal(path: str) -> bool:
    """Whether a normalised path lies in the server's own state directory."""
    return path.partition("/")[0] == INTERNAL_DIR


def parent_and_name(path: str) -> tuple[str, str]:
    """`('a/b', 'c')` for `'a/b/c'`, `('', 'c')` for `'c'`; the root has no name."""
    if not path:
        raise InvalidPathError("the root has no parent")
    parent, _, name = path.rpartition("/")
    return parent, name


def join_path(dir_path: str, name: str) -> str:
    """The path of `name` (one decoded segment, checked here) inside `dir_path`."""
    _check_segment(name)
    path = f"{dir_path}/{name}" if dir_path else name
    if _utf8_length(path) > MAX_PATH_BYTES:
        raise InvalidPathError(f"path longer than {MAX_PATH_BYTES} bytes")
    return path
