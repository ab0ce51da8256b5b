"""Request metrics middleware, the `/metrics` endpoint and the event-loop lag probe.

Requests are tallied in plain integers and reach Prometheus at each scrape of this process
and once a second (the lag probe's tick), so under `--workers` another worker's counts may
be up to a second behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from aiohttp import web

from artifactd.metrics import CONTENT_TYPE
from artifactd.web.keys import METRICS
from artifactd.web.middlewares import Handler
from artifactd.web.pipeline import PIPELINE

LAG_PROBE_SECONDS = 1.0


def route_label(request: web.Request) -> str:
    """The route template (bounded cardinality), never the raw path."""
    resource = request.match_info.route.resource
    if resource is None:
        return "unmatched"
    return resource.canonical


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    pipeline = request.app[PIPELINE]
    traffic = pipeline.traffic
    traffic.in_flight += 1
    status = 500
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # redirects pass through the errors middleware as raises
        status = exc.status
        raise
    finally:
        traffic.in_flight -= 1
        pipeline.count(request, route_label(request), status, request.content.total_bytes, response)


def count_unhandled(request: web.Request, response: web.StreamResponse) -> None:
    """Tally an answer made before the middlewares run (an `Expect: 100-continue`
    refusal), as metrics_middleware tallies every other one; no body was read."""
    pipeline = request.config_dict[PIPELINE]
    pipeline.count(request, route_label(request), response.status, 0, response)


async def metrics_endpoint(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    metrics.flush_traffic()  # on the loop, where the tally is counted
    body = await asyncio.to_thread(metrics.exposition)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def loop_lag_probe(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: measure how late a timer fires, a direct sign of a blocked loop."""

    async def probe() -> None:
        metrics = app[METRICS]
        while True:
            started = time.monotonic()
            await asyncio.sleep(LAG_PROBE_SECONDS)
            metrics.loop_lag.set(max(0.0, time.monotonic() - started - LAG_PROBE_SECONDS))
            # Other workers' `/metrics` read this process's counts only once flushed.
            metrics.flush_traffic()

    task = asyncio.create_task(probe(), name="artifactd-loop-lag")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    app[METRICS].flush_traffic()
