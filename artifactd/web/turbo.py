"""Turborepo's remote cache API, the `/turbo` sub-application (`turbo --api URL/turbo`).

What turbo's client (crates/turborepo-api-client/src/lib.rs) relies on:
- `PUT /v8/artifacts/{hash}` with `Content-Type: application/octet-stream`,
  `x-artifact-duration` (the task's milliseconds) and, when signing, `x-artifact-tag`; any
  2xx is success (`error_for_status`).
- `GET` and `HEAD /v8/artifacts/{hash}`: 404 is a miss (`Ok(None)`), 403 is parsed as
  `{"error": {"code", "message"}}` (`handle_403`), anything else not 2xx is an error.
- `GET /v8/artifacts/status` → `{"status": "enabled"}` (`get_caching_status`).
- Every request carries `Authorization: Bearer <token>` and the team as `?teamId=` (only an
  id starting with `team_`) and/or `?slug=` (`add_team_params`).
ducktors' turborepo-remote-cache (src/plugins/remote-cache/routes) answers the same routes
plus `POST /v8/artifacts/events` (200 `{}`), which turbo sends with its usage events.

Entries are ordinary artifacts `turbo/<team>/<hash>`, written by the same verified atomic
upload as PUT /files/. The two headers turbo wants back are kept as parameters of the
artifact's stored media type, so they live and die with its bytes on every backend.
"""

from __future__ import annotations

import json
import re

from aiohttp import web

from artifactd.durations import parse_decimal
from artifactd.errors import InvalidValueError, NotFoundError
from artifactd.http.digests import expected_sha256
from artifactd.store.base import ArtifactInfo, ArtifactReader
from artifactd.web import buildcache
from artifactd.web.errors import ERROR_RENDERER, with_app_shape
from artifactd.web.expect import declared_length_expect_handler
from artifactd.web.files import file_url
from artifactd.web.keys import SETTINGS, STORE
from artifactd.web.uploads import (
    body_chunks,
    check_declared_length,
    expires_at_for,
    store_stream,
    write_requirement,
)

MEDIA_TYPE = "application/octet-stream"
DURATION_HEADER = "x-artifact-duration"
TAG_HEADER = "x-artifact-tag"
# The most hashes one batch query may ask about.
MAX_QUERY_HASHES = 1000
# turbo's tag is the base64 HMAC-SHA256 of the artifact (turborepo-cache signature
# authentication); anything longer or with other characters is no tag of turbo's.
_TAG = re.compile(r"[A-Za-z0-9+/=_-]{1,512}")
_MAX_DURATION_MS = 2**53 - 1  # what a JSON number holds exactly
# Turborepo's error codes (Vercel's REST API) for the statuses artifactd answers.
_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    417: "expectation_failed",
    429: "rate_limited",
    501: "not_implemented",
    503: "service_unavailable",
    507: "insufficient_storage",
}
# The answer's x-artifact-* headers, added when its headers go out (`send_artifact` builds
# the response itself).
_ARTIFACT_HEADERS = web.RequestKey("turbo_artifact_headers", dict[str, str])


def create_turbo_app() -> web.Application:
    app = web.Application()
    app[ERROR_RENDERER] = render_error
    app.on_response_prepare.append(_add_artifact_headers)
    # The fixed routes first: "status" would otherwise be taken for a hash.
    app.router.add_get("/v8/artifacts/status", caching_status)
    app.router.add_post("/v8/artifacts/events", record_events)
    app.router.add_post("/v8/artifacts", query_artifacts)
    app.router.add_get("/v8/artifacts/{hash}", get_artifact)  # and HEAD
    app.router.add_put(
        "/v8/artifacts/{hash}",
        put_artifact,
        expect_handler=with_app_shape(declared_length_expect_handler),
    )
    return app


def render_error(status: int, reason: str) -> tuple[bytes, str]:
    """Turborepo's error shape: `{"error": {"code", "message"}}`."""
    code = _ERROR_CODES.get(status, "internal_server_error" if status >= 500 else "error")
    body = json.dumps({"error": {"code": code, "message": reason}})
    return body.encode(), "application/json"


def stored_media_type(request: web.BaseRequest) -> str:
    """The media type to store: octet-stream with the client's duration and tag."""
    media_type = MEDIA_TYPE
    duration = request.headers.get(DURATION_HEADER)
    if duration is not None:
        milliseconds = parse_decimal(duration, name=DURATION_HEADER, maximum=_MAX_DURATION_MS)
        media_type += f"; duration={milliseconds}"
    tag = request.headers.get(TAG_HEADER)
    if tag is not None:
        if not _TAG.fullmatch(tag):
            raise InvalidValueError(f"{TAG_HEADER} must be base64, at most 512 characters")
        media_type += f'; tag="{tag}"'
    return media_type


def artifact_metadata(info: ArtifactInfo) -> tuple[int, str | None]:
    """The task duration (ms, 0 if unknown) and tag stored with an entry."""
    duration, tag = 0, None
    for parameter in info.content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name == "duration" and value.isdigit():
            duration = int(value)
        elif name == "tag" and _TAG.fullmatch(value.strip('"')):
            tag = value.strip('"')
    return duration, tag


def _entry_path(request: web.Request) -> str:
    return buildcache.turbo_path(buildcache.turbo_team(request.query), request.match_info["hash"])


async def get_artifact(request: web.Request) -> web.StreamResponse:
    """GET/HEAD: the entry's bytes (or headers) with its duration and tag; 404 a miss."""

    def keep_headers(reader: ArtifactReader) -> None:
        duration, tag = artifact_metadata(reader.info)
        headers = {DURATION_HEADER: str(duration)}
        if tag is not None:
            headers[TAG_HEADER] = tag
        request[_ARTIFACT_HEADERS] = headers

    return await buildcache.send_entry(
        request, "turbo", _entry_path(request), MEDIA_TYPE, on_open=keep_headers
    )


async def _add_artifact_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = request.get(_ARTIFACT_HEADERS)
    if headers is not None and response.status < 300:
        response.headers.update(headers)


async def put_artifact(request: web.Request) -> web.Response:
    """PUT: store the entry (verified, atomic), replacing an older one; 202 with its URL."""
    settings = request.config_dict[SETTINGS]
    path = _entry_path(request)
    media_type = stored_media_type(request)
    check_declared_length(request, settings)
    info, _ = await store_stream(
        request,
        path,
        body_chunks(request, settings),
        content_type=media_type,
        expires_at=expires_at_for(request, settings, path),
        expected_sha256=expected_sha256(request.headers),
        requirement=write_requirement(request, settings),
    )
    buildcache.count(request, "turbo", "write", size=info.size)
    # Vercel's API answers 202 `{"urls": [...]}`; turbo only checks for a 2xx.
    return web.json_response({"urls": [file_url(info.path)]}, status=202)


async def caching_status(request: web.Request) -> web.Response:
    return web.json_response({"status": "enabled"})


async def record_events(request: web.Request) -> web.Response:
    """turbo's cache usage events (a JSON array): accepted, nothing kept."""
    events = await _json_body(request)
    if not isinstance(events, list):
        raise InvalidValueError("events must be a JSON array")
    return web.json_response({})


async def query_artifacts(request: web.Request) -> web.Response:
    """`{"hashes": [...]}` → each hash's `{"size", "taskDurationMs", "tag"}`, or null."""
    body = await _json_body(request)
    hashes = body.get("hashes") if isinstance(body, dict) else None
    if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
        raise InvalidValueError('the body must be {"hashes": [<hash>, ...]}')
    if len(hashes) > MAX_QUERY_HASHES:
        raise InvalidValueError(f"at most {MAX_QUERY_HASHES} hashes per query")
    team = buildcache.turbo_team(request.query)
    store = request.config_dict[STORE]
    found: dict[str, object] = {}
    for artifact_hash in hashes:
        try:
            info = await store.file_info(buildcache.turbo_path(team, artifact_hash))
        except NotFoundError:
            found[artifact_hash] = None
            continue
        duration, tag = artifact_metadata(info)
        found[artifact_hash] = {"size": info.size, "taskDurationMs": duration, "tag": tag}
    return web.json_response(found)


async def _json_body(request: web.Request) -> object:
    try:
        return json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidValueError("the body is not JSON") from exc
