"""The build-cache protocols' shared rules: which artifact a request names, which of their
POSTs only read, and the per-protocol hit/miss/write count.

`turbo.py` (Turborepo) and `nx.py` (Nx) answer the requests; `security.py` asks this
module what a request touches, so tokens, scopes and prefixes apply as they do under
/files/. Nothing here imports the upload or security code (both import this).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from aiohttp import hdrs, web

from artifactd.errors import InvalidPathError, NotFoundError
from artifactd.metrics import CacheKind, CacheResult
from artifactd.store.base import ArtifactReader
from artifactd.web.download.send import send_artifact
from artifactd.web.files import record_read
from artifactd.web.keys import METRICS, SETTINGS, STORE

TURBO_PREFIX = "/turbo"
NX_PREFIX = "/nx"
TURBO_ARTIFACTS = TURBO_PREFIX + "/v8/artifacts"
NX_CACHE = NX_PREFIX + "/v1/cache"

# Turborepo's batch query and its usage events are POSTs that change nothing: a read token
# may send them (ducktors' turborepo-remote-cache, routes/artifacts-events.ts, marks the
# events route `authorization: 'read'`).
READ_ONLY_POSTS = frozenset({TURBO_ARTIFACTS, TURBO_ARTIFACTS + "/events"})

DEFAULT_TEAM = "default"
# turbo's task hashes are 16 hex digits (xxHash64); the bound leaves room for a longer
# digest. Hex only, so a hash is always one safe path segment ("status", "events" are not).
_TURBO_HASH = re.compile(r"[0-9a-fA-F]{1,128}")
# Nx's hashes are decimal strings; letters are allowed, nothing that could be a separator.
_NX_HASH = re.compile(r"[0-9A-Za-z]{1,128}")
# A team id (`team_...`) or slug as turbo sends them: one segment, never a dot segment or
# the hidden `.artifactd` directory.
_TEAM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def turbo_team(query: Mapping[str, str]) -> str:
    """The team of a Turborepo request: `teamId`, else `slug`, else "default".

    turbo adds `teamId` only when its team id starts with `team_`, and `slug` whenever a
    team is set (turborepo-api-client `add_team_params`).
    """
    team = query.get("teamId") or query.get("slug") or DEFAULT_TEAM
    if not _TEAM.fullmatch(team):
        raise InvalidPathError("the team must be letters, digits, '_', '-' or '.'")
    return team


def turbo_path(team: str, artifact_hash: str) -> str:
    if not _TURBO_HASH.fullmatch(artifact_hash):
        raise InvalidPathError("a Turborepo artifact hash is hexadecimal")
    return f"turbo/{team}/{artifact_hash}"


def nx_path(artifact_hash: str) -> str:
    if not _NX_HASH.fullmatch(artifact_hash):
        raise InvalidPathError("an Nx cache hash is letters and digits")
    return f"nx/{artifact_hash}"


def is_read_only_post(method: str, path: str) -> bool:
    return method == hdrs.METH_POST and path in READ_ONLY_POSTS


def touched_path(path: str, query: Mapping[str, str]) -> str | None:
    """The artifact (or, for Turborepo's team-wide endpoints, the team directory) a
    build-cache request touches, for the token prefix check; None if `path` is no
    build-cache URL. InvalidPathError for a malformed hash or team."""
    if path.startswith(TURBO_PREFIX + "/"):
        team = turbo_team(query)
        tail = path.removeprefix(TURBO_ARTIFACTS + "/")
        if path in READ_ONLY_POSTS or path == TURBO_ARTIFACTS + "/status":
            return f"turbo/{team}"
        if tail != path and "/" not in tail:
            return turbo_path(team, tail)
        raise InvalidPathError("not a Turborepo endpoint")
    if path.startswith(NX_CACHE + "/"):
        return nx_path(path.removeprefix(NX_CACHE + "/"))
    if path.startswith(NX_PREFIX + "/"):
        raise InvalidPathError("not an Nx endpoint")
    return None


def count(
    request: web.Request, kind: CacheKind, result: CacheResult, amount: int = 1, size: int = 0
) -> None:
    """Count `amount` lookups or writes of a cache API, `size` bytes read or written (the
    /files/ clients are counted by the request pipeline, from their User-Agent)."""
    request.config_dict[METRICS].count_cache(kind, result, amount, size)


async def send_entry(
    request: web.Request,
    kind: CacheKind,
    path: str,
    media_type: str,
    on_open: Callable[[ArtifactReader], None] = lambda reader: None,
) -> web.StreamResponse:
    """GET or HEAD of one cache entry: its bytes, or 404 on a miss; a GET counts as a hit or
    a miss (HEAD does not, so hits over hits and misses is a hit rate). `on_open` sees the
    opened entry before the answer is made (Turborepo's headers come from its metadata)."""
    store = request.config_dict[STORE]
    is_get = request.method == hdrs.METH_GET
    try:
        reader = await store.open_file(path)  # a directory there is a miss too
    except NotFoundError:
        if is_get:
            count(request, kind, "miss")
        raise
    async with reader:
        await record_read(request, store, path)
        if is_get:
            count(request, kind, "hit", size=reader.info.size)
        on_open(reader)
        settings = request.config_dict[SETTINGS]
        return await send_artifact(
            request,
            reader,
            chunk_size=settings.chunk_size,
            max_ranges=settings.max_ranges,
            content_type=media_type,
            zero_copy=settings.sendfile,
        )
