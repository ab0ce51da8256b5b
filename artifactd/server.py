"""Running the server: runner and site, readiness line, signals, graceful shutdown.

Built on AppRunner/TCPSite rather than `run_app`, so the bound address (also for `--port 0`)
is known and printed once the socket listens, and shutdown happens in documented steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator

from aiohttp import web

from artifactd.errors import AddressInUseError
from artifactd.hardening import harden_process
from artifactd.runner import build_runner, configure_logging
from artifactd.settings import Settings
from artifactd.web.security import ACCESS_POLICY, warn_if_writes_refused

log = logging.getLogger("artifactd.server")


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
    runner = await build_runner(settings)
    await runner.setup()  # on_startup reads the tokens file: a corrupt one stops us here
    app = runner.app
    warning = await asyncio.to_thread(
        warn_if_writes_refused, settings.host, app[ACCESS_POLICY].tokens, private=settings.private
    )
    if warning:
        log.warning("%s", warning)
    try:
        site = web.TCPSite(
            runner, settings.host, settings.port, backlog=1024, reuse_port=reuse_port or None
        )
        with translated_bind_errors(settings.host, settings.port):
            await site.start()
        host, port = _bound_address(runner)
        serving = await asyncio.to_thread(_describe, settings)  # realpath touches the disk
        # Signals are ours before the readiness line: a SIGTERM sent as soon as a supervisor
        # or a test has read it drains, rather than killing the process.
        with stop_signals() as stopped:
            announce(f"artifactd listening on http://{host}:{port}/ ({serving})")
            sys.stdout.flush()
            await stopped.wait()
        log.info(
            "shutting down: no new connections, waiting up to %ss for requests in flight",
            settings.shutdown_timeout,
        )
    finally:
        # ArtifactRunner.cleanup drains (--shutdown-timeout), then aiohttp's own cleanup.
        await runner.cleanup()
    log.info("stopped")


@contextlib.contextmanager
def translated_bind_errors(host: str, port: int) -> Iterator[None]:
    """A bind refused because the address is taken becomes AddressInUseError (exit 2)."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise AddressInUseError(
            f"{host}:{port} is already in use (is another server running there?)"
        ) from exc


def _describe(settings: Settings) -> str:
    if settings.backend == "s3":
        return f"bucket {settings.s3_bucket}, prefix {settings.s3_prefix!r}"
    return f"root {os.path.realpath(settings.root)}"


def _bound_address(runner: web.AppRunner) -> tuple[str, int]:
    address = runner.addresses[0]
    host, port = address[0], address[1]
    return (f"[{host}]" if ":" in host else host), port


@contextlib.contextmanager
def stop_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGTERM or SIGINT while inside; the previous handlers come back after."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
