"""The browse page: a listing people can read, sort, filter and upload to.

Plain HTML that works without JavaScript (sorting and filtering are links and a GET form,
uploads a normal form post); a few lines of inline script add copy buttons and upload
progress. No external assets; every name is escaped.
"""

from __future__ import annotations

import html
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlencode

from artifactd.durations import format_size
from artifactd.http.disposition import is_plain_name
from artifactd.store.base import DirEntry
from artifactd.timestamps import isoformat_utc

SortKey = Literal["name", "size", "modified"]
SORT_KEYS: tuple[SortKey, ...] = ("name", "size", "modified")


@dataclass(frozen=True, slots=True)
class View:
    """How the visitor asked to see the listing (from the query string)."""

    sort: SortKey = "name"
    descending: bool = False
    filter: str = ""

    @classmethod
    def from_query(cls, query: dict[str, str]) -> View:
        sort = query.get("sort", "name")
        return cls(
            sort=sort if sort in SORT_KEYS else "name",
            descending=query.get("order") == "desc",
            filter=query.get("filter", "")[:200],
        )

    def query_for(self, sort: SortKey) -> str:
        """The query string of a column header link: same column again flips the order."""
        descending = not self.descending if sort == self.sort else False
        params = {"sort": sort, "order": "desc" if descending else "asc"}
        if self.filter:
            params["filter"] = self.filter
        return "?" + urlencode(params)


def arrange(entries: Sequence[DirEntry], view: View) -> list[DirEntry]:
    """Filter by name (case-insensitive substring), then sort; directories stay first."""
    needle = view.filter.lower()
    chosen = [e for e in entries if needle in e.name.lower()]
    if view.sort == "size":
        chosen.sort(key=lambda e: (e.size or 0, e.name), reverse=view.descending)
    elif view.sort == "modified":
        chosen.sort(key=lambda e: (e.modified_at, e.name), reverse=view.descending)
    else:
        chosen.sort(key=lambda e: e.name, reverse=view.descending)
    return [e for e in chosen if e.type == "dir"] + [e for e in chosen if e.type == "file"]


def _readable_time(timestamp: float) -> str:
    """`2026-11-24 07:00:00` (UTC, as the column header says)."""
    return (isoformat_utc(timestamp) or "").replace("T", " ").removesuffix("Z")


def download_command(name: str, url: str) -> str:
    """A shell command that saves `url` under its real `name`: `curl -O` names the file
    after the URL's last segment as sent, percent-encoding and all, so a name the URL
    cannot carry as it is gets `-o NAME`. Both are shell-quoted (the origin comes from the
    request's Host)."""
    if is_plain_name(name):
        return f"curl -fO {shlex.quote(url)}"
    return f"curl -fo {shlex.quote(name)} {shlex.quote(url)}"


def _row(entry: DirEntry, dir_url: str, origin: str) -> str:
    is_dir = entry.type == "dir"
    href = quote(entry.name, safe="") + ("/" if is_dir else "")
    label = entry.name + ("/" if is_dir else "")
    size = "" if entry.size is None else format_size(entry.size)
    exact = "" if entry.size is None else f"{entry.size} bytes"
    modified = _readable_time(entry.modified_at)
    expires = "never" if entry.expires_at is None else _readable_time(entry.expires_at)
    command = "" if is_dir else download_command(entry.name, f"{origin}{dir_url}{href}")
    sha = f' title="sha256 {html.escape(entry.sha256)}"' if entry.sha256 else ""
    copy = (
        f"<code{sha}>{html.escape(command)}</code> "
        f'<button type="button" class="copy" data-cmd="{html.escape(command)}">copy</button>'
        if command
        else ""
    )
    return (
        f'<tr class="{entry.type}"><td><a href="{html.escape(href)}">{html.escape(label)}</a></td>'
        f'<td class="num" title="{exact}">{html.escape(size)}</td>'
        f'<td class="when">{html.escape(modified)}</td>'
        f'<td class="when">{"" if is_dir else html.escape(expires)}</td><td>{copy}</td></tr>'
    )


def render_page(path: str, entries: Sequence[DirEntry], view: View, origin: str) -> str:
    """The HTML listing of directory `path`; `origin` (scheme://host) feeds the curl lines."""
    dir_url = "/files/" + (quote(path, safe="/") + "/" if path else "")
    title = html.escape(f"/files/{path}/" if path else "/files/")
    shown = arrange(entries, view)
    rows = [_row(e, dir_url, origin) for e in shown]
    if path:
        rows.insert(
            0,
            '<tr class="dir"><td><a href="../">../</a></td><td></td><td></td>'
            "<td></td><td></td></tr>",
        )
    arrow = " ↓" if view.descending else " ↑"
    headers = "".join(
        f'<th><a href="{html.escape(view.query_for(key))}">{key.title()}'
        f"{arrow if key == view.sort else ''}</a></th>"
        for key in SORT_KEYS
    )
    empty = "" if shown else '<p class="empty">Nothing here yet.</p>'
    return _PAGE.format(
        title=title,
        headers=headers,
        rows="\n".join(rows),
        empty=empty,
        filter=html.escape(view.filter),
        count=len(shown),
    )


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Index of {title}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 1.5em 2em; color: #222; }}
h1 {{ font-size: 1.3em; word-break: break-all; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ padding: .3em .8em; text-align: left; border-bottom: 1px solid #eee; }}
th a {{ color: inherit; }}
td.num {{ text-align: right; white-space: nowrap; }}
td.when {{ white-space: nowrap; }}
tr.dir a {{ font-weight: 600; }}
code {{ font-size: .85em; background: #f4f4f4; padding: .1em .3em; word-break: break-all; }}
form {{ margin: .8em 0; }}
fieldset {{ border: 1px solid #ddd; }}
progress {{ width: 20em; }}
</style></head>
<body>
<h1>Index of {title}</h1>
<p>Times are UTC.</p>
<form method="get" class="filter"><label>Filter names
<input type="search" name="filter" value="{filter}"></label>
<button type="submit">Filter</button> <span>{count} entries</span></form>
<table>
<thead><tr>{headers}<th>Expires</th><th>Download</th></tr></thead>
<tbody>
{rows}
</tbody></table>
{empty}
<form method="post" enctype="multipart/form-data" id="upload"><fieldset>
<legend>Upload to this directory</legend>
<label>Keep for <input type="text" name="ttl" placeholder="e.g. 7d or never" size="10"></label>
<input type="file" name="file" multiple required>
<button type="submit">Upload</button>
<progress id="progress" max="1" value="0" hidden></progress>
</fieldset></form>
<script>
document.querySelectorAll("button.copy").forEach(function (b) {{
  b.addEventListener("click", function () {{
    navigator.clipboard.writeText(b.dataset.cmd).then(function () {{ b.textContent = "copied"; }});
  }});
}});
var form = document.getElementById("upload");
form.addEventListener("submit", function (event) {{
  event.preventDefault();
  var data = new FormData(form), ttl = data.get("ttl"), xhr = new XMLHttpRequest();
  var bar = document.getElementById("progress");
  xhr.open("POST", ttl ? "?ttl=" + encodeURIComponent(ttl) : "");
  xhr.setRequestHeader("Accept", "application/json");
  xhr.upload.onprogress = function (e) {{ bar.hidden = false; bar.value = e.loaded / e.total; }};
  xhr.onload = function () {{
    if (xhr.status < 300) {{ location.reload(); }}
    else {{ alert("Upload failed: " + xhr.responseText); }}
  }};
  xhr.send(data);
}});
</script>
</body></html>
"""
