"""Directory listings: an HTML page for people and `wget -r`, JSON for scripts."""

from __future__ import annotations

from aiohttp import web

from artifactd.store.base import DirEntry
from artifactd.timestamps import isoformat_utc


def wants_json(request: web.Request) -> bool:
    """JSON on `?format=json`, or when Accept ranks application/json above text/html."""
    if request.query.get("format") == "json":
        return True
    return _accept_quality(request, "application/json") > _accept_quality(request, "text/html")


def _accept_quality(request: web.Request, media_type: str) -> float:
    """The q-value Accept gives `media_type` exactly or via its wildcard (RFC 9110 §12.5.1)."""
    accept = request.headers.get("Accept", "")
    best = -1.0
    best_specificity = -1
    main_type = media_type.split("/")[0]
    for item in accept.split(","):
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        if name == media_type:
            specificity = 2
        elif name == f"{main_type}/*":
            specificity = 1
        elif name == "*/*":
            specificity = 0
        else:
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if specificity > best_specificity:
            best, best_specificity = quality, specificity
    return best


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
