"""The Python baseline for `make bench`: aiohttp's own `web.FileResponse` serving a directory.

    python -m bench.baseline_fileresponse --root DIR [--port 0] [--loop uvloop|asyncio]

`GET /files/<path>` answers `web.FileResponse(DIR/<path>)`, with aiohttp's own handling of
ranges, conditionals and (on the asyncio loop) `loop.sendfile`; nothing else. Prints
`listening on http://127.0.0.1:PORT/` once the socket listens, stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT: web.AppKey[Path] = web.AppKey("root", Path)


async def get_file(request: web.Request) -> web.StreamResponse:
    rel = request.match_info["path"]
    # Enough safety for a benchmark: no empty, dot or dot-dot segments, no backslashes.
    parts = rel.split("/")
    if not rel or "\\" in rel or any(p in ("", ".", "..") for p in parts):
        raise web.HTTPNotFound()
    return web.FileResponse(request.app[ROOT].joinpath(*parts))


def create_app(root: Path) -> web.Application:
    app = web.Application()
    app[ROOT] = root
    app.router.add_get("/files/{path:.*}", get_file)
    return app


async def serve(
    app: web.Application | web.Server, host: str, port: int, **runner_options: Any
) -> None:
    """Serve `app` (or a low-level server) until SIGTERM or SIGINT, announcing the bound
    address (also used by bench/baseline_floor.py). `runner_options` are for an
    Application; a low-level server takes its own when it is built."""
    runner: web.BaseRunner
    if isinstance(app, web.Server):
        if runner_options:  # a ServerRunner would drop them without a word
            raise TypeError(f"give {sorted(runner_options)} to web.Server, not to serve()")
        runner = web.ServerRunner(app, handle_signals=False)
    else:
        runner = web.AppRunner(app, handle_signals=False, **runner_options)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        bound = runner.addresses[0]
        print(f"listening on http://{bound[0]}:{bound[1]}/", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args(argv)
    coro = serve(create_app(args.root.resolve()), args.host, args.port)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
