"""Plain downloads of hot artifacts, answered before the Application's router.

aiohttp's Application (routing, one coroutine per middleware, the response signal) took
about a fifth of a small download's time: 4 KiB went from ~11,500 to ~14,700 req/s
without it (docs/performance.md). For the requests the middlewares would pass through
untouched this module answers directly, with the same code that answers them inside the
Application: `requested_path`, the store's `open_now`, `immediate_answer`, then the same
headers and the same metrics. That is a GET of
`/files/<path>` without a query, a body or `Expect`, on a server that is neither
`--private` nor rate limited (those checks stay in the middlewares), for an artifact the
store can open without waiting and whose whole answer is ready at once: a small body, a
single range in the page cache, a 304 or a 416. Anything else, including any request that
would end in another error, goes to the Application unchanged.

What the middlewares do for these requests is repeated here, so a new middleware or
response signal must be mirrored here too (`tests/web/test_hot_path.py` checks the list).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from artifactd.errors import ArtifactdError
from artifactd.web.app import FILES_ROUTE_LABEL
from artifactd.web.compression import is_compressible, wants_gzip
from artifactd.web.download import immediate_answer
from artifactd.web.files import FILES_PREFIX, requested_path
from artifactd.web.keys import METRICS, SETTINGS, STORE
from artifactd.web.middlewares import add_headers_of_every_response, begin_new_request

LowLevelHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class HotPath:
    """The low-level server's request handler: answer hot downloads, pass on the rest."""

    def __init__(self, app: web.Application, application_handler: LowLevelHandler) -> None:
        settings = app[SETTINGS]
        self._store = app[STORE]
        self._traffic = app[METRICS].traffic
        self._max_ranges = settings.max_ranges
        self._zero_copy = settings.sendfile
        self._close_after_response = settings.keepalive_timeout == 0
        self._application_handler = application_handler

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        url = request.rel_url
        if (
            request.method == hdrs.METH_GET
            and url.raw_path.startswith(FILES_PREFIX)
            and not url.raw_query_string
        ):
            headers = request.headers
            # Expect and a body need the Application: its Expect handler, and the errors
            # middleware's checks of a body's framing.
            if not (
                hdrs.EXPECT in headers
                or hdrs.TRANSFER_ENCODING in headers
                or hdrs.CONTENT_LENGTH in headers
            ):
                answer = await self._answer(request)
                if answer is not None:
                    return answer
        return await self._application_handler(request)

    async def _answer(self, request: web.BaseRequest) -> web.Response | None:
        """The answer, or None when the Application must give it."""
        try:
            path, is_directory = requested_path(request)
        except ArtifactdError:
            return None  # 400/404 with its JSON body: the errors middleware's work
        try:
            reader = None if is_directory else self._store.open_now(path)
        except OSError:
            return None  # e.g. out of descriptors: the Application's open reports it as JSON
        if reader is None:
            return None
        begin_new_request(request)
        try:
            info = reader.info
            compressible = is_compressible(info.content_type)
            if compressible and wants_gzip(request, info):
                return None
            response = immediate_answer(
                request,
                reader,
                max_ranges=self._max_ranges,
                vary=compressible,
                zero_copy=self._zero_copy,
            )
        except ArtifactdError:
            return None  # a failed precondition (412)
        finally:
            await reader.aclose()
        if response is None:
            return None  # streamed: the Application's path handles a client leaving
        await self._store.record_access(path)
        add_headers_of_every_response(request, response, self._close_after_response)
        # No request body (no Content-Length or Transfer-Encoding); a body not yet sent.
        self._traffic.count(
            hdrs.METH_GET, FILES_ROUTE_LABEL, response.status, 0, response.content_length or 0
        )
        return response


def install_hot_path(app: web.Application, server: web.Server) -> None:
    """Put the hot path in front of `app` on the low-level server that runs it (a set-up
    AppRunner's `server`). Not for `--private` or rate-limited servers, whose every read
    the middlewares check."""
    settings = app[SETTINGS]
    if settings.private or settings.rate_limit:
        return
    server.request_handler = HotPath(app, server.request_handler)
