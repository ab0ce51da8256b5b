"""Content-Disposition for downloads (RFC 6266, with RFC 8187's `filename*`).

A URL carries a name as it is only when every character is unreserved (RFC 3986 §2.3);
any other name reaches `curl -O` or a browser percent-encoded (`a%20b.txt`). Such names
get `attachment; filename="<ASCII fallback>"; filename*=UTF-8''<percent-encoded>`, which
browsers, wget and `curl -OJ` turn back into a file name (curl reads only the fallback).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from urllib.parse import quote

_PLAIN_NAME = re.compile(r"[A-Za-z0-9._~-]+")
# RFC 8187 §3.2.1 attr-char, less what `quote` always keeps: the rest is percent-encoded.
_ATTR_CHAR_PUNCTUATION = "!#$&+^`|"
# Characters a fallback must not carry (RFC 6266 appendix D: no '%', no escapes).
_NOT_IN_FALLBACK = re.compile(r'[^\x20-\x7e]|["\\%]')


@functools.lru_cache(maxsize=4096)  # once per name: asked when a version's headers are made
def content_disposition(path: str) -> str | None:
    """The Content-Disposition for a download of `path` (its last segment names the
    file), or None when the name is plain and the URL already says it."""
    name = path.rpartition("/")[2]
    if not name or is_plain_name(name):
        return None
    encoded = quote(name, safe=_ATTR_CHAR_PUNCTUATION, encoding="utf-8")
    return f"attachment; filename=\"{ascii_fallback(name)}\"; filename*=UTF-8''{encoded}"


def is_plain_name(name: str) -> bool:
    """Whether a URL carries `name` as it is (only RFC 3986 unreserved characters), so
    that `curl -O` and browsers save it under that name without help."""
    return _PLAIN_NAME.fullmatch(name) is not None


def ascii_fallback(name: str) -> str:
    """`name` for recipients that ignore `filename*`: accents dropped (é → e), every other
    character outside printable ASCII, and `"`, `\\` and `%`, replaced by `_`."""
    decomposed = unicodedata.normalize("NFKD", name)
    folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NOT_IN_FALLBACK.sub("_", folded)
