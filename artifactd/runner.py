"""The configured aiohttp runner every server process uses, `artifactd serve` and gunicorn.

aiohttp's limits and timeouts, the access log, and after setup the low-level server's
guards, hot paths and in-flight count; its cleanup drains before aiohttp's own. gunicorn's
aiohttp worker accepts an async function returning an AppRunner, sets it up and serves it
(aiohttp/worker.py, GunicornWebWorker._run), so `artifactd.app:serve_app` returns this same
runner and a gunicorn worker serves exactly what `serve` serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web

from artifactd.hardening import MAX_HEADER_FIELD_BYTES
from artifactd.settings import Settings
from artifactd.store.factory import build_store
from artifactd.store.filesystem import FilesystemStore
from artifactd.web.accesslog import ACCESS_LOGGER, access_logger_class, flush_access_log
from artifactd.web.app import create_app
from artifactd.web.download.hot import install_hot_path
from artifactd.web.hotput import install_hot_put
from artifactd.web.keys import DEPARTURES, EVENTS, SETTINGS
from artifactd.web.pipeline import guard_request_factory

log = logging.getLogger("artifactd.server")

# How long requests still running after the drain (--shutdown-timeout) get before they
# are cancelled.
CANCEL_GRACE_SECONDS = 1.0
RequestHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

# aiohttp's defaults, stated here because they are part of the security contract.
MAX_REQUEST_LINE_BYTES = 8190
AIOHTTP_LINGERING_SECONDS = 10.0
# With keep-alive and the body timeout both disabled, a connection still has this long to
# deliver a complete request head (see `request_head_deadline`).
DEFAULT_REQUEST_HEAD_SECONDS = 60.0


def request_head_deadline(settings: Settings) -> float:
    """The `keepalive_timeout` handed to aiohttp, which is also the slowloris bound.

    aiohttp arms its keep-alive timer when a connection opens and re-arms it after each
    response; bytes arriving do not push it back. So a client that has not completed a
    request head when it fires (one byte a second, say) is disconnected: idle keep-alive
    and slow request heads share one deadline. aiohttp arms nothing when the timeout is 0,
    which would let a slowloris client hold its connection forever; with
    `--keepalive-timeout 0` the request head gets `--body-timeout` instead, and the
    application closes the connection after each response (see
    `artifactd.web.pipeline.Pipeline`).
    """
    return settings.keepalive_timeout or settings.body_timeout or DEFAULT_REQUEST_HEAD_SECONDS


def lingering_seconds(settings: Settings) -> float:
    """How long aiohttp keeps reading, after the answer, a request body the handler did not
    read (a GET with a body, an upload refused early), so the client sees the answer and
    not a reset. aiohttp's default is 10 s whatever the body's pace: a client that declared
    a body and sent none held each such connection that long. Bounded by --body-timeout,
    as every other wait for body bytes."""
    if settings.body_timeout:
        return min(settings.body_timeout, AIOHTTP_LINGERING_SECONDS)
    return AIOHTTP_LINGERING_SECONDS


def configure_logging(log_format: str) -> None:
    """Everything to stderr; the access log is one line per request."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


class ArtifactRunner(web.AppRunner):
    """An AppRunner configured from the app's settings; `setup` installs artifactd's
    handlers on the low-level server, `cleanup` drains first (see `drain`)."""

    def __init__(self, app: web.Application) -> None:
        settings = app[SETTINGS]
        super().__init__(
            app,
            handle_signals=False,
            access_log_class=access_logger_class(settings.log_format),
            access_log=ACCESS_LOGGER,
            keepalive_timeout=request_head_deadline(settings),
            # What is still running after `drain` has waited --shutdown-timeout is cancelled
            # after this grace (aiohttp reads 0 as "no limit").
            shutdown_timeout=CANCEL_GRACE_SECONDS,
            lingering_time=lingering_seconds(settings),
            max_line_size=MAX_REQUEST_LINE_BYTES,
            max_field_size=MAX_HEADER_FIELD_BYTES,
        )
        self._drain_seconds = settings.shutdown_timeout
        self.in_flight: InFlightRequests | None = None

    async def setup(self) -> None:
        await super().setup()  # on_startup reads the tokens file: a corrupt one stops here
        server = self.server
        assert server is not None  # set up
        guard_request_factory(server)
        self.app[DEPARTURES].install(server)
        install_hot_put(self.app, server)
        install_hot_path(self.app, server)
        self.in_flight = InFlightRequests.install(server)

    async def cleanup(self) -> None:
        """Drain, then aiohttp's cleanup: close the (now idle) connections, run
        on_shutdown, cancel what outlived the drain after CANCEL_GRACE_SECONDS, then
        on_cleanup. gunicorn's worker calls this after SIGTERM too."""
        if self.in_flight is not None:
            await drain(self, self.in_flight, self._drain_seconds)
        await super().cleanup()
        flush_access_log()


async def build_runner(settings: Settings) -> ArtifactRunner:
    """Open and start the store (off the loop: it touches the disk), then the app and its
    runner, not yet set up."""
    store = await asyncio.to_thread(build_store, settings)
    await store.start()
    if isinstance(store, FilesystemStore) and store.read_only:
        log.warning(
            "the storage root %s is on a read-only filesystem: serving downloads only, "
            "uploads and deletes answer 507",
            store.root,
        )
    return ArtifactRunner(create_app(settings, store))


class InFlightRequests:
    """Wraps the low-level server's request handler to count the requests being handled,
    so shutdown can wait for them while their connections still read request bodies."""

    def __init__(self, handler: RequestHandler) -> None:
        self._handler = handler
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False

    @classmethod
    def install(cls, server: web.Server) -> InFlightRequests:
        in_flight = cls(server.request_handler)
        server.request_handler = in_flight
        return in_flight

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        self._count += 1
        self._idle.clear()
        try:
            response = await self._handler(request)
            if self.draining:
                # Connection: close on an answer not yet sent; a sent one's connection is
                # closed after it. Either way the client asks nothing more of this server.
                response.force_close()
            return response
        finally:
            self._count -= 1
            if not self._count:
                self._idle.set()

    async def wait_until_idle(self, timeout_seconds: float) -> int:
        """Wait until no request is in flight, or the timeout; returns how many still are."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_seconds)
        return self._count


async def drain(runner: web.AppRunner, in_flight: InFlightRequests, timeout: float) -> None:
    """Stop listening, end event streams, then wait up to `timeout` for requests in flight.

    aiohttp's own shutdown (AppRunner.cleanup) first closes every connection, and a closed
    connection drops the request body bytes still arriving (RequestHandler.data_received):
    an upload in flight then never completes. Waiting here, before cleanup, lets uploads
    finish within --shutdown-timeout as downloads do.
    """
    for site in list(runner.sites):
        await site.stop()
    in_flight.draining = True
    app = runner.app
    if EVENTS in app:
        app[EVENTS].close()  # a stream of events would otherwise hold the drain to its end
    left = await in_flight.wait_until_idle(timeout)
    if left:
        log.warning("%d requests still in flight after %ss: cancelling them", left, timeout)
