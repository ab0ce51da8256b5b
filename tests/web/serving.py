"""Real servers in-process (AppRunner, TCPSite on port 0, as `serve` runs them) and a
client that reduces an answer to what must not depend on how it was sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from yarl import URL

from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.web.app import create_app
from artifactd.web.download.hot import install_hot_path
from artifactd.web.hotput import install_hot_put

# Headers that differ between any two answers.
PER_REQUEST = {"x-request-id", "x-response-time", "date"}

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Served:
    url: str
    reached_application: list[str]  # "METHOD path?query" of every request it answered
    app: web.Application
    runner: web.AppRunner


@asynccontextmanager
async def serving(settings: Settings, *, hot: bool) -> AsyncIterator[Served]:
    """A server on `settings.root`, with the hot paths (downloads, PUTs) in front of the
    Application, as `serve` runs it, or not."""
    store = await FilesystemStore.create(settings.root)
    app = create_app(settings, store)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    assert runner.server is not None
    reached: list[str] = []
    application = runner.server.request_handler

    async def counted(request: web.BaseRequest) -> web.StreamResponse:
        reached.append(f"{request.method} {request.rel_url}")
        return await application(request)

    runner.server.request_handler = counted
    if hot:
        install_hot_put(app, runner.server)
        install_hot_path(app, runner.server)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield Served(f"http://{host}:{port}", reached, app, runner)
    finally:
        await runner.cleanup()


def client_session() -> aiohttp.ClientSession:
    """A client that sends only the headers it is given and keeps bodies as sent."""
    return aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=["Accept-Encoding"])


async def fetch(
    session: aiohttp.ClientSession,
    base: str,
    method: str,
    target: str,
    headers: dict[str, str],
    data: bytes | None = None,
) -> Answer:
    """Status, headers (lowercased names, but the per-request ones) and body; a multipart
    boundary (random per answer) and the server's own URL replaced by placeholders."""
    url = URL(base + target, encoded=True)  # exactly as written: no dot-segment removal
    async with session.request(method, url, headers=headers, data=data) as response:
        body = await response.read()
        names = {k.lower(): v for k, v in response.headers.items()}
        kept = {k: v for k, v in names.items() if k not in PER_REQUEST}
        boundary = kept.get("content-type", "").partition("boundary=")[2]
        if boundary:  # random per answer
            kept["content-type"] = kept["content-type"].replace(boundary, "BOUNDARY")
            body = body.replace(boundary.encode(), b"BOUNDARY")
        body = body.replace(base.encode(), b"ORIGIN")  # listings show the server's URL
        return response.status, kept, body
