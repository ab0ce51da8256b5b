"""Directory listings: an HTML page for people and `wget -r`, JSON for scripts."""

from __future__ import annotations

import html
from urllib.parse import quote

from aiohttp import web

from artifactd.durations import format_size
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


def render_html(path: str, entries: list[DirEntry]) -> str:
    """A plain, escaped index page; relative links so `wget -r -np` can follow them."""
    title = html.escape(f"/files/{path}/" if path else "/files/")
    rows = []
    if path:
        rows.append('<tr><td><a href="../">../</a></td><td></td><td></td><td></td></tr>')
    for entry in entries:
        suffix = "/" if entry.type == "dir" else ""
        href = quote(entry.name, safe="") + suffix
        size = "" if entry.size is None else format_size(entry.size)
        expires = isoformat_utc(entry.expires_at) or ""
        rows.append(
            f'<tr><td><a href="{html.escape(href)}">{html.escape(entry.name + suffix)}</a></td>'
            f'<td class="size">{html.escape(size)}</td>'
            f"<td>{html.escape(isoformat_utc(entry.modified_at) or '')}</td>"
            f"<td>{html.escape(expires)}</td></tr>"
        )
    body = "\n".join(rows)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Index of {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: .2em 1em; text-align: left; }}
td.size {{ text-align: right; }}
</style></head>
<body><h1>Index of {title}</h1>
<table><thead><tr><th>Name</th><th>Size</th><th>Modified (UTC)</th><th>Expires (UTC)</th></tr>
</thead><tbody>
{body}
</tbody></table></body></html>
"""
