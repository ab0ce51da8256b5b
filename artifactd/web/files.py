"""Handlers for `/files/...`: thin steps over the store (parse the path, open, answer)."""

from __future__ import annotations

import asyncio
import functools
import time
from urllib.parse import quote

from aiohttp import hdrs, web

from artifactd.durations import parse_decimal
from artifactd.errors import InvalidPathError, IsDirectoryError, NotFoundError
from artifactd.paths import is_internal, names_directory, parse_artifact_path
from artifactd.store.base import ArtifactReader, Store, listing_key
from artifactd.web.api import decode_cursor, encode_cursor, parse_limit
from artifactd.web.browse import View, render_page
from artifactd.web.departures import has_departed
from artifactd.web.download.gzip import (
    GzipSource,
    choose_variant,
    gzip_source,
    plan_gzip_stream,
)
from artifactd.web.download.send import send_artifact, send_plan
from artifactd.web.keys import DEPARTURES, EVENTS, SETTINGS, STORE
from artifactd.web.listing import LISTING_HEADERS, entries_json, wants_json

FILES_PREFIX = "/files/"
MAX_WAIT_SECONDS = 300
# Uploads through other processes on the same root publish no event here: poll this often.
WAIT_POLL_SECONDS = 1.0


def requested_path(request: web.BaseRequest) -> tuple[str, bool]:
    """The normalised artifact path and whether the URL ended with '/' (a directory).

    Taken from the raw, still percent-encoded URL so that encoded dot segments and
    separators are judged by `parse_artifact_path`, not silently decoded first.
    """
    raw = request.rel_url.raw_path
    tail = raw[len(FILES_PREFIX) :] if raw.startswith(FILES_PREFIX) else ""
    path = _parse_cached(tail)
    if is_internal(path):
        raise NotFoundError(path)
    return path, names_directory(tail)


@functools.lru_cache(maxsize=4096)
def _parse_cached(tail: str) -> str:
    """parse_artifact_path is pure and hot paths repeat: remember the recent answers
    (refusals are not cached: lru_cache does not keep exceptions)."""
    return parse_artifact_path(tail)


def file_url(path: str) -> str:
    return FILES_PREFIX + quote(path, safe="/")


def directory_url(path: str) -> str:
    """`/files/<path>/` built from the normalised path only: it can never leave the host."""
    return FILES_PREFIX + (quote(path, safe="/") + "/" if path else "")


async def get_file(request: web.Request) -> web.StreamResponse:
    """GET/HEAD: a file's bytes, or a directory's listing."""
    path, is_dir_request = requested_path(request)
    app = request.app
    store = app[STORE]
    if is_dir_request:
        return await list_directory(request, path)
    wait_seconds = parse_wait(request.query.get("wait")) if request.query_string else 0.0
    try:
        reader = await store.open(path)
    except IsDirectoryError:
        raise web.HTTPMovedPermanently(directory_url(path)) from None
    except NotFoundError:
        if not wait_seconds:
            raise
        reader = await wait_for_artifact(request, path, wait_seconds)
    settings = app[SETTINGS]
    async with reader:
        await record_read(request, store, path)
        variant = choose_variant(request.headers, reader.info)
        if variant.gzip:
            return await send_compressed(request, reader, path)
        return await send_artifact(
            request,
            reader,
            chunk_size=settings.chunk_size,
            max_ranges=settings.max_ranges,
            vary=variant.vary,
            zero_copy=settings.sendfile,
        )


async def record_read(request: web.BaseRequest, store: Store, path: str) -> None:
    """A GET of an artifact counts as an access (eviction by last access); a HEAD not."""
    if request.method == hdrs.METH_GET:
        await store.record_access(path)


async def send_compressed(
    request: web.Request, reader: ArtifactReader, path: str
) -> web.StreamResponse:
    """The gzip variant: a current `.gz` sibling stored next to the file if any (as nginx's
    gzip_static), else compressed on the fly (`gzip_source` decides)."""
    settings = request.app[SETTINGS]
    try:
        sibling: ArtifactReader | None = await request.app[STORE].open_file(path + ".gz")
    except (NotFoundError, InvalidPathError):
        sibling = None
    try:
        source = gzip_source(request.version, reader.info, sibling.info if sibling else None)
        if source is GzipSource.ON_THE_FLY:
            plan = plan_gzip_stream(request.method, request.headers, reader.info)
            return await send_plan(
                request, plan, reader, chunk_size=settings.chunk_size, zero_copy=settings.sendfile
            )
        chosen = sibling if source is GzipSource.SIBLING and sibling is not None else reader
        return await send_artifact(
            request,
            chosen,
            chunk_size=settings.chunk_size,
            max_ranges=settings.max_ranges,
            vary=True,
            content_encoding="gzip" if chosen is sibling else None,
            content_type=reader.info.content_type,
            path=reader.info.path,
            zero_copy=settings.sendfile,
        )
    finally:
        if sibling is not None:
            await sibling.aclose()


def parse_wait(raw: str | None) -> float:
    """`?wait=N`: whole seconds, 0 to 300."""
    if raw is None:
        return 0.0
    return float(parse_decimal(raw, name="wait (seconds)", maximum=MAX_WAIT_SECONDS))


async def wait_for_artifact(request: web.Request, path: str, seconds: float) -> ArtifactReader:
    """Hold the request until `path` exists (then open it) or `seconds` pass (NotFoundError).
    A client that leaves ends the wait at once (ConnectionResetError: logged as a 499)."""
    store, events = request.app[STORE], request.app[EVENTS]
    deadline = time.monotonic() + seconds
    with request.app[DEPARTURES].watch(request) as watch:
        while True:
            appeared = events.appeared(path)  # registered before looking: no upload is missed
            watch.wake = appeared
            try:
                return await store.open(path)
            except NotFoundError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                if has_departed(request, watch):
                    raise ConnectionResetError("the client left while waiting") from None
                try:
                    async with asyncio.timeout(min(remaining, WAIT_POLL_SECONDS)):
                        await appeared.wait()
                except TimeoutError:
                    pass
                if has_departed(request, watch):
                    raise ConnectionResetError("the client left while waiting") from None
            finally:
                watch.wake = None
                events.forget(path, appeared)


async def list_directory(request: web.Request, path: str) -> web.Response:
    if wants_json(request) and "limit" in request.query:
        # One page, as /api/v1/artifacts pages: a directory of 100,000 entries need not be
        # one answer of 50 MB, and only the page's entries are read from disk.
        limit = parse_limit(request.query.get("limit"))
        cursor = request.query.get("cursor")
        chunk, more = await request.app[STORE].list_dir_page(
            path, decode_cursor(cursor) if cursor else None, limit
        )
        document = entries_json(path, chunk)
        document["next_cursor"] = encode_cursor(listing_key(chunk[-1])) if more else None
        return web.json_response(document, headers=LISTING_HEADERS)
    entries = await request.app[STORE].list_dir(path)
    if wants_json(request):
        return web.json_response(entries_json(path, entries), headers=LISTING_HEADERS)
    origin = f"{request.scheme}://{request.host}"
    page = render_page(path, entries, View.from_query(dict(request.query)), origin)
    return web.Response(
        text=page, content_type="text/html", charset="utf-8", headers=LISTING_HEADERS
    )


async def redirect_to_files(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently(FILES_PREFIX)
