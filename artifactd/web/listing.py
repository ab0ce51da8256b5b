"""Directory listings: an HTML page for people and `wget -r`, JSON for scripts."""

from __future__ import annotations

from aiohttp import web

from artifactd.http.negotiation import media_type_quality
from artifactd.store.base import DirEntry
from artifactd.timestamps import isoformat_utc

# The form (HTML or JSON) is negotiated on Accept, so caches must key on it (RFC 9110
# §12.5.5), whichever form this answer has.
LISTING_HEADERS = {"Vary": "Accept"}


def wants_json(request: web.Request) -> bool:
    """JSON on `?format=json`, or when Accept ranks application/json above text/html."""
    if request.query.get("format") == "json":
        return True
    accept = request.headers.get("Accept")
    return media_type_quality(accept, "application/json") > media_type_quality(accept, "text/html")


def entries_json(path: str, entries: list[DirEntry]) -> dict[str, object]:
    return {
        "path": path,
        "entries": [
            {
                "name": entry.name,
                "type": entry.type,
                "size": entry.size,
                "sha256": entry.sha256,
                "modified": isoformat_utc(entry.modified_at),
                "expires_at": isoformat_utc(entry.expires_at),
            }
            for entry in entries
        ],
    }
