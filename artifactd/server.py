"""Running the server: runner and site, readiness line, signals, graceful shutdown.

Built on AppRunner/TCPSite rather than `run_app`, so the bound address (also for `--port 0`)
is known and printed once the socket listens, and shutdown happens in documented steps.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable

from aiohttp import web

from artifactd.hardening import MAX_HEADER_FIELD_BYTES, harden_process
from artifactd.settings import Settings
from artifactd.store.factory import build_store
from artifactd.store.filesystem import FilesystemStore
from artifactd.web.accesslog import ACCESS_LOGGER, access_logger_class, flush_access_log
from artifactd.web.app import create_app
from artifactd.web.download.hot import install_hot_path
from artifactd.web.security import ACCESS_POLICY, warn_if_writes_refused

log = logging.getLogger("artifactd.server")

# aiohttp's defaults, stated here because they are part of the security contract.
MAX_REQUEST_LINE_BYTES = 8190
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


def serve(
    settings: Settings, announce: Callable[[str], None] = print, *, reuse_port: bool = False
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully. Returns normally on a clean
    shutdown (exit code 0). `reuse_port` lets several worker processes bind one port."""
    configure_logging(settings.log_format)
    harden_process()
    if settings.loop == "uvloop":
        import uvloop

        uvloop.run(_serve(settings, announce, reuse_port))
    else:
        asyncio.run(_serve(settings, announce, reuse_port))


async def _serve(settings: Settings, announce: Callable[[str], None], reuse_port: bool) -> None:
    store = await asyncio.to_thread(build_store, settings)
    await store.start()
    if isinstance(store, FilesystemStore) and store.read_only:
        log.warning(
            "the storage root %s is on a read-only filesystem: serving downloads only, "
            "uploads and deletes answer 507",
            store.root,
        )
    app = create_app(settings, store)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=access_logger_class(settings.log_format),
        access_log=ACCESS_LOGGER,
        keepalive_timeout=request_head_deadline(settings),
        shutdown_timeout=settings.shutdown_timeout,
        max_line_size=MAX_REQUEST_LINE_BYTES,
        max_field_size=MAX_HEADER_FIELD_BYTES,
    )
    await runner.setup()  # on_startup reads the tokens file: a corrupt one stops us here
    assert runner.server is not None  # set up
    install_hot_path(app, runner.server)
    warning = await asyncio.to_thread(
        warn_if_writes_refused, settings.host, app[ACCESS_POLICY].tokens, private=settings.private
    )
    if warning:
        log.warning("%s", warning)
    try:
        site = web.TCPSite(
            runner, settings.host, settings.port, backlog=1024, reuse_port=reuse_port or None
        )
        await site.start()
        host, port = _bound_address(runner)
        serving = await asyncio.to_thread(_describe, settings)  # realpath touches the disk
        announce(f"artifactd listening on http://{host}:{port}/ ({serving})")
        sys.stdout.flush()
        await _wait_for_stop_signal()
        log.info(
            "shutting down: no new connections, waiting up to %ss for requests in flight",
            settings.shutdown_timeout,
        )
    finally:
        # AppRunner.cleanup: stop listening, close idle keep-alive connections, run
        # on_shutdown, wait up to shutdown_timeout for handlers, cancel the rest, on_cleanup.
        await runner.cleanup()
        flush_access_log()
    log.info("stopped")


def _describe(settings: Settings) -> str:
    if settings.backend == "s3":
        return f"bucket {settings.s3_bucket}, prefix {settings.s3_prefix!r}"
    return f"root {os.path.realpath(settings.root)}"


def _bound_address(runner: web.AppRunner) -> tuple[str, int]:
    address = runner.addresses[0]
    host, port = address[0], address[1]
    return (f"[{host}]" if ":" in host else host), port


async def _wait_for_stop_signal() -> None:
    """Block until SIGTERM or SIGINT; restore the previous handlers afterwards."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
