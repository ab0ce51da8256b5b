"""The application factory: routes, middlewares, signals and background tasks, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import hdrs, web

from artifactd import evictor as evictor_module
from artifactd.config import settings_from_environment
from artifactd.documents import artifact_document
from artifactd.durations import parse_rate
from artifactd.events import EventLog
from artifactd.evictor import EvictionReason, EvictionReport, Evictor
from artifactd.metrics import Metrics
from artifactd.ratelimit import RateLimiter, parse_networks
from artifactd.settings import Settings
from artifactd.store.base import ArtifactInfo, Store
from artifactd.store.factory import build_store
from artifactd.tokens import TokenStore
from artifactd.web import expect, files, ietf_uploads, ops, uploads
from artifactd.web.api import API_PREFIX, create_api_app
from artifactd.web.buildcache import NX_PREFIX, TURBO_PREFIX
from artifactd.web.dav import handlers as dav
from artifactd.web.departures import Departures
from artifactd.web.keys import DEPARTURES, EVENTS, EVICTOR, METRICS, SETTINGS, STORE
from artifactd.web.metrics import loop_lag_probe, metrics_endpoint, metrics_middleware
from artifactd.web.middlewares import errors_middleware
from artifactd.web.nx import create_nx_app
from artifactd.web.pipeline import PIPELINE, Pipeline
from artifactd.web.routes import FilesResource
from artifactd.web.security import install_security
from artifactd.web.turbo import create_turbo_app

# Any tail, newlines included: an encoded "\n" must reach the path check (400), not miss
# the route (404).
FILES_ROUTE = r"/files/{tail:[\s\S]*}"


def create_app(settings: Settings | None = None, store: Store | None = None) -> web.Application:
    """Build the web application; the store is closed with it.

    Without arguments (as under gunicorn) settings come from ARTIFACTD_* variables and a
    filesystem store is opened on `settings.root`, before any event loop runs.
    """
    settings = settings or settings_from_environment()
    if store is None:
        store = build_store(settings)
        app_starts_store = True
    else:
        app_starts_store = False
    # Outermost first: metrics see the final status of every answer, errors become JSON.
    app = web.Application(middlewares=[metrics_middleware, errors_middleware])
    # Appended inside errors_middleware: rate limit (also guards token guessing), then auth.
    install_security(
        app,
        TokenStore(settings.root),
        private=settings.private,
        limiter=RateLimiter(*parse_rate(settings.rate_limit)) if settings.rate_limit else None,
        trusted_proxies=parse_networks(settings.trusted_proxy),
    )
    app[SETTINGS] = settings
    app[STORE] = store
    events = app[EVENTS] = EventLog()
    app[DEPARTURES] = Departures()
    metrics = app[METRICS] = Metrics()

    def record_eviction(info: ArtifactInfo, reason: EvictionReason) -> None:
        metrics.evictions.labels(reason).inc()
        events.publish("evicted", {**artifact_document(info), "reason": reason})

    def record_pass(report: EvictionReport) -> None:
        metrics.stored_artifacts.set(report.live_artifacts)
        metrics.stored_bytes.set(report.live_bytes)

    app[EVICTOR] = Evictor(
        store,
        max_size_bytes=settings.max_size,
        policies=settings.policies,
        on_evicted=record_eviction,
        on_pass=record_pass,
        report_paths=False,
    )
    pipeline = app[PIPELINE] = Pipeline.for_settings(settings, metrics.traffic)
    app.on_response_prepare.append(pipeline.on_response_prepare)
    app.cleanup_ctx.append(_background_eviction)
    app.cleanup_ctx.append(loop_lag_probe)
    app.on_shutdown.append(_end_event_streams)
    if app_starts_store:
        app.on_startup.append(_start_store)
    app.on_cleanup.append(_close_store)

    app.router.add_get("/", files.redirect_to_files)
    app.router.add_get("/files", files.redirect_to_files)
    files_resource = FilesResource(FILES_ROUTE)
    app.router.register_resource(files_resource)
    files_resource.add_route(hdrs.METH_HEAD, files.get_file)
    files_resource.add_route(hdrs.METH_GET, files.get_file)
    # A PUT asking for a resumable upload (the IETF draft) becomes one; others are plain.
    files_resource.add_route(
        hdrs.METH_PUT, ietf_uploads.put_file, expect_handler=expect.files_expect_handler
    )
    files_resource.add_route(
        hdrs.METH_POST, uploads.post_files, expect_handler=expect.files_expect_handler
    )
    files_resource.add_route(hdrs.METH_OPTIONS, ietf_uploads.advertising(dav.options))
    for method, handler in dav.METHODS.items():
        files_resource.add_route(
            method, handler, expect_handler=expect.declared_length_expect_handler
        )
    ietf_uploads.add_routes(app)
    app.router.add_get("/healthz", ops.healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.add_subapp(API_PREFIX, create_api_app())
    app.add_subapp(TURBO_PREFIX, create_turbo_app())
    app.add_subapp(NX_PREFIX, create_nx_app())
    return app


async def _background_eviction(app: web.Application) -> AsyncIterator[None]:
    """Clean leftovers of crashed uploads at startup, then evict every --evict-interval."""
    await app[STORE].collect_garbage()
    async with evictor_module.running(app[EVICTOR], app[SETTINGS].evict_interval):
        yield


async def _end_event_streams(app: web.Application) -> None:
    app[EVENTS].close()


async def _start_store(app: web.Application) -> None:
    await app[STORE].start()


async def _close_store(app: web.Application) -> None:
    await app[STORE].close()
