"""The `/api/v1` sub-application: artifact metadata, paging, stats and an SSE event stream."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json

from aiohttp import web

from artifactd.documents import artifact_document
from artifactd.durations import parse_decimal
from artifactd.errors import ArtifactdError, InvalidValueError, NotFoundError
from artifactd.paths import is_internal, names_directory, parse_artifact_path
from artifactd.store.base import ArtifactInfo
from artifactd.web.errors import error_for_domain
from artifactd.web.keys import EVENTS, EVICTOR, STORE
from artifactd.web.middlewares import Handler
from artifactd.web.openapi import openapi_document

API_PREFIX = "/api/v1"
DEFAULT_PAGE = 100
MAX_PAGE = 1000
HEARTBEAT_SECONDS = 15.0


@web.middleware
async def no_store_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API answers, errors included, describe a changing store: no cache may keep them."""
    try:
        response = await handler(request)
    except ArtifactdError as exc:
        response = error_for_domain(exc, request)
    if not response.prepared:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def create_api_app() -> web.Application:
    api = web.Application(middlewares=[no_store_middleware])
    api.router.add_get("/artifacts", list_artifacts)
    api.router.add_get(r"/artifacts/{tail:[\s\S]+}", get_artifact)
    api.router.add_get("/events", stream_events)
    api.router.add_get("/stats", stats)
    api.router.add_get("/openapi.json", openapi_json)
    return api


_OPENAPI_BODY = json.dumps(openapi_document(), indent=1).encode()


async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of the whole HTTP interface."""
    return web.Response(body=_OPENAPI_BODY, content_type="application/json")


def encode_cursor(path: str) -> str:
    return base64.urlsafe_b64encode(path.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidValueError("malformed cursor") from exc


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    return parse_decimal(raw, name="limit", minimum=1, maximum=MAX_PAGE)


async def list_artifacts(request: web.Request) -> web.Response:
    """A page of artifacts in path order; `next_cursor` continues after the last one."""
    prefix = request.query.get("prefix", "")
    limit = parse_limit(request.query.get("limit"))
    cursor = request.query.get("cursor")
    after = decode_cursor(cursor) if cursor else None
    page: list[ArtifactInfo] = []
    more = False
    # From the store's index: O(log N + page) wherever the cursor is.
    async for info in request.config_dict[STORE].iter_artifacts(prefix, after=after):
        if len(page) == limit:
            more = True
            break
        page.append(info)
    return web.json_response(
        {
            "artifacts": [artifact_document(i, with_last_accessed=True) for i in page],
            "next_cursor": encode_cursor(page[-1].path) if more else None,
        }
    )


async def get_artifact(request: web.Request) -> web.Response:
    raw = request.rel_url.raw_path.split("/artifacts/", 1)[1]
    path = parse_artifact_path(raw)
    if not path or is_internal(path) or names_directory(raw):
        raise NotFoundError(path)
    info = await request.config_dict[STORE].info(path)
    return web.json_response(artifact_document(info, with_last_accessed=True))


async def stats(request: web.Request) -> web.Response:
    """From the store's running totals: O(log N) however many artifacts it holds."""
    usage = await request.config_dict[STORE].usage()
    evictor = request.config_dict[EVICTOR]
    return web.json_response(
        {
            "artifacts": usage.artifacts,
            "bytes": usage.bytes,
            "expired_pending": usage.expired,
            "evicted_total": evictor.evicted_total,
            "max_size": evictor.max_size_bytes,
        }
    )


def parse_last_event_id(raw: str | None) -> int:
    """Where to resume; a malformed id is ignored (everything held is replayed), as a
    missing one: the header is optional and the stream must not die of it."""
    try:
        return 0 if raw is None else parse_decimal(raw.strip(), name="id", maximum=2**63 - 1)
    except InvalidValueError:
        return 0


async def stream_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events; resumes after Last-Event-ID from the events still in memory."""
    events = request.config_dict[EVENTS]
    subscription = events.subscribe()  # before the replay, so nothing falls in between
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        sent = parse_last_event_id(
            request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        )
        for past in list(events.since(sent)):
            await response.write(past.to_sse())
            sent = past.id
        await response.write(b": connected\n\n")
        while True:
            try:
                async with asyncio.timeout(HEARTBEAT_SECONDS):
                    event = await subscription.next()
            except TimeoutError:
                await response.write(b": heartbeat\n\n")
                continue
            if event is None:
                break  # subscription ended (shutdown, or this client fell too far behind)
            if event.id > sent:
                await response.write(event.to_sse())
                sent = event.id
        return response
    finally:
        events.unsubscribe(subscription)
