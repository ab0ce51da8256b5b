"""Entry points for gunicorn: `gunicorn artifactd.app:serve_app --worker-class ...`
(the runner `artifactd serve` uses), and the older `artifactd.app:create_app()`."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from artifactd.config import settings_from_environment
from artifactd.hardening import harden_process
from artifactd.runner import build_runner, configure_logging
from artifactd.settings import Settings
from artifactd.store.base import Store
from artifactd.web.app import create_app as _create_web_app


async def serve_app() -> web.AppRunner:
    """What a gunicorn worker serves: `serve`'s own runner, settings from ARTIFACTD_*.

    aiohttp's gunicorn worker awaits an async function given as the app and, when it
    returns an AppRunner, sets that up and serves it instead of building a plain one
    (aiohttp/worker.py, GunicornWebWorker._run). So the request-head limits, the head
    deadline, the access log, the request guards, the hot paths and the drain on SIGTERM
    are `serve`'s; gunicorn's `--keep-alive` and access-log flags do not apply. Log lines
    go to stderr as `serve` writes them, unless a logging configuration already gave the
    root logger handlers (gunicorn's `--log-config`).
    """
    # Off the loop: the config file is read and paths are checked on disk.
    settings = await asyncio.to_thread(settings_from_environment)
    harden_process()
    if not logging.getLogger().handlers:
        configure_logging(settings.log_format)
    return await build_runner(settings)


def create_app(settings: Settings | None = None, store: Store | None = None) -> web.Application:
    """The application alone, in a process hardened as `artifactd serve` hardens its own
    (see artifactd.hardening); settings from ARTIFACTD_* when none are given.

    Under gunicorn prefer `serve_app`: with an Application, aiohttp's worker builds a plain
    AppRunner, without `serve`'s request-head limits and deadline, request guards (a
    CONNECT would hang its connection), hot paths, access log or drain on SIGTERM.
    """
    harden_process()
    return _create_web_app(settings, store)


__all__ = ["create_app", "serve_app"]
