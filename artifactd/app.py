"""Entry point for gunicorn: `gunicorn 'artifactd.app:create_app()' --worker-class ...`."""

from __future__ import annotations

from aiohttp import web

from artifactd.hardening import harden_process
from artifactd.settings import Settings
from artifactd.store.base import Store
from artifactd.web.app import create_app as _create_web_app


def create_app(settings: Settings | None = None, store: Store | None = None) -> web.Application:
    """The application, in a process hardened as `artifactd serve` hardens its own
    (see artifactd.hardening); settings from ARTIFACTD_* when none are given."""
    harden_process()
    return _create_web_app(settings, store)


__all__ = ["create_app"]
