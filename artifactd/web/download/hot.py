"""Plain downloads of hot artifacts, answered before the Application's router.

aiohttp's Application (routing, one coroutine per middleware, the response signal) is a
large share of a small download's time (docs/performance.md, "Optimisations"). This module
answers, in front of it, the requests its middlewares would pass through untouched, in
three steps: eligible? → plan → send. Eligible is a GET or HEAD of `/files/<path>` without
a query, a body (`Content-Length: 0` is none) or `Expect`, on a server whose access policy
lets such reads through unchecked, for an artifact the store can open without waiting. The
plan is `plan_download`'s, the one the Application executes; the hot path answers when the
plan's body is ready at once (`at_once`: a small body, a single range in the page cache, a
304, a 416), or a 404 for a miss the store proves at once. Anything else, including any
request that would end in another error, goes to the Application unchanged. The bookkeeping
(request id, clock, common headers, metrics) is `pipeline`'s, the same calls the
Application's middlewares make.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from artifactd.errors import ArtifactdError, NotFoundError
from artifactd.web.download.gzip import choose_variant
from artifactd.web.download.plan import plan_download
from artifactd.web.download.send import respond_now
from artifactd.web.errors import error_for_domain
from artifactd.web.files import FILES_PREFIX, record_read, requested_path
from artifactd.web.keys import SETTINGS, STORE
from artifactd.web.pipeline import FILES_ROUTE_LABEL, PIPELINE, begin_new_request
from artifactd.web.security import ACCESS_POLICY

LowLevelHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class HotPath:
    """The low-level server's request handler: answer hot downloads, pass on the rest."""

    def __init__(self, app: web.Application, application_handler: LowLevelHandler) -> None:
        settings = app[SETTINGS]
        self._store = app[STORE]
        self._pipeline = app[PIPELINE]
        self._max_ranges = settings.max_ranges
        self._zero_copy = settings.sendfile
        self._application_handler = application_handler

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        url = request.rel_url
        method = request.method
        if (
            (method == hdrs.METH_GET or method == hdrs.METH_HEAD)
            and url.raw_path.startswith(FILES_PREFIX)
            and not url.raw_query_string
        ):
            headers = request.headers
            # Expect and a body need the Application: its Expect handler, and the errors
            # middleware's checks of a body's framing. `Content-Length: 0` frames no body
            # (RFC 9110 §8.6: a valid length; the framing check passes it) and many clients
            # send it on every request, the cache mix's included: answered here.
            if not (
                hdrs.EXPECT in headers
                or hdrs.TRANSFER_ENCODING in headers
                or headers.get(hdrs.CONTENT_LENGTH, "0") != "0"
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
        except NotFoundError as exc:
            # A miss proven without waiting: the errors middleware's 404, from its table.
            begin_new_request(request)
            missing = error_for_domain(exc, request)
            self._pipeline.finish(request, missing, FILES_ROUTE_LABEL)
            return missing
        except OSError:
            return None  # e.g. out of descriptors: the Application's open reports it as JSON
        if reader is None:
            return None
        begin_new_request(request)
        try:
            info = reader.info
            variant = choose_variant(request.headers, info)
            if variant.gzip:
                return None  # compressed: streamed by the Application
            plan = plan_download(
                request.method,
                request.headers,
                info,
                max_ranges=self._max_ranges,
                zero_copy=self._zero_copy,
                vary=variant.vary,
                remember=not reader.info_once,
            )
            if not plan.at_once:
                return None  # streamed, or a 412 for the errors middleware
            response = respond_now(plan, reader, zero_copy=self._zero_copy)
        except ArtifactdError:
            return None  # a store that failed to read: the Application reports it
        finally:
            await reader.aclose()
        if response is None:
            return None  # not in the page cache after all: streamed by the Application
        await record_read(request, self._store, path)
        self._pipeline.finish(request, response, FILES_ROUTE_LABEL)
        return response


def install_hot_path(app: web.Application, server: web.Server) -> None:
    """Put the hot path in front of `app` on the low-level server that runs it (a set-up
    AppRunner's `server`), if the app's access policy lets public reads through without a
    check (not so for `--private` or rate-limited servers)."""
    if not app[ACCESS_POLICY].passes_reads_unchecked():
        return
    server.request_handler = HotPath(app, server.request_handler)
