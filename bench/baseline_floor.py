"""The aiohttp floor for `make bench`: the least an aiohttp server can do per request while
answering what artifactd must answer (SPEC: request id, response time, nosniff, validators,
digests, one access-log line per request).

    python -m bench.baseline_floor --root DIR [--port 0] [--low-level] [--no-fsync] [--metadata]

Every file up to 256 KiB directly in DIR (the bench's test files) is read into memory at
startup, with its headers built once; larger ones are read per request with one `pread`.
`GET /files/<path>` answers a `web.Response` with those bytes, or a 206 for one `bytes=a-b`
range. Any other path (the random keys, the cache mix's objects, what was PUT) is the real
file under DIR, opened, fstat'ed and read on the event loop, no worker thread: a server of
100,000 keys or more cannot hold them all in memory, so reading each from the page cache is
the least it does (artifactd opens its cold reads on the loop too); its validators come from
fstat and a stand-in digest (artifactd reads the stored one from its index), built for every
file at startup (and for each new version when first read) and kept in memory. `PUT
/files/<path>` stores the body durably (bench/floor_put.py) and answers 201 with a small
JSON body, as artifactd does. One middleware adds the per-request headers; the access log is
a text line per request on stderr. No metrics, no auth, no preconditions, no metadata, no
path safety beyond refusing `.` and `..` segments: it is a ceiling for artifactd on the same
stack (uvloop, aiohttp's router and response), not a server.

`--low-level` (server `aiohttp-lowlevel`) answers the same from aiohttp's low-level
`web.Server`, below the Application's router, middlewares and signals, as artifactd's hot
path does: the ceiling for anything built on aiohttp that still sends what artifactd must.
`--no-fsync` (server `aiohttp-floor-nofsync`) PUTs without any fsync, as nginx's WebDAV does.
`--metadata` (server `aiohttp-floor-meta`) also makes one SQLite row per PUT durable before
its rename, group-committed (bench/floor_meta.py): the ceiling with the metadata the SPEC
asks for. All write their access-log lines once per event-loop turn, as artifactd does.
Prints `listening on http://127.0.0.1:PORT/` once the socket listens; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import itertools
import os
import re
import stat
import sys
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from pathlib import Path

import uvloop
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from bench.baseline_fileresponse import serve
from bench.floor_meta import META_DIR
from bench.floor_put import DurablePuts

INLINE_BYTES = 256 * 1024
RANGE = re.compile(r"bytes=([0-9]{1,18})-([0-9]{1,18})")
REQUEST_ID = web.RequestKey("request_id", str)
STARTED_AT = web.RequestKey("started_at", float)
_ids = itertools.count(1)


class File:
    """One file: its bytes when small, else an open descriptor; headers built once."""

    def __init__(self, path: Path) -> None:
        info = path.stat()
        self.size = info.st_size
        self.data: bytes | None = None
        self.fd: int | None = None
        if self.size <= INLINE_BYTES:
            self.data = path.read_bytes()
            digest = hashlib.sha256(self.data).digest()
        else:  # not hashed: a stand-in digest gives headers of the same length
            self.fd = os.open(path, os.O_RDONLY)
            digest = stand_in_digest(str(path), info.st_mtime_ns)
        self.headers = file_headers(digest, info.st_mtime)

    def read(self, offset: int, length: int) -> bytes:
        if self.data is not None:
            return self.data[offset : offset + length]
        assert self.fd is not None
        return os.pread(self.fd, length, offset)


def stand_in_digest(path: str, mtime_ns: int) -> bytes:
    """A digest-shaped value for a file not hashed here (headers of the same length)."""
    return hashlib.sha256(f"{path}:{mtime_ns}".encode()).digest()


def file_headers(digest: bytes, mtime: float) -> dict[str, str]:
    return {
        "Content-Type": "application/octet-stream",
        "ETag": f'"{digest.hex()[:32]}"',
        "Last-Modified": formatdate(mtime, usegmt=True),
        "Accept-Ranges": "bytes",
        "Repr-Digest": f"sha-256=:{base64.b64encode(digest).decode()}:",
        "X-Checksum-Sha256": digest.hex(),
    }


FILES: dict[str, File] = {}  # the test files directly in the root, by name
ROOT = Path()
PUTS: list[DurablePuts] = []  # the one store of PUT bodies, once main has made it
# The headers of each file below the root, by path, with the identity (inode, mtime, size)
# they were built for: validators kept in memory as artifactd's read index keeps its rows
# (about 1 KiB per file here: ~100 MiB for 100,000 keys), built at startup for the files
# there and on first read for those PUT since, so a read from disk costs its syscalls, not
# the formatting of a date and a digest.
DISK_HEADERS: dict[str, tuple[tuple[int, int, int], dict[str, str]]] = {}


async def get_file(request: web.Request) -> web.Response:
    return answer(request, request.match_info["path"])


def answer(request: web.BaseRequest, path: str) -> web.Response:
    found = FILES.get(path)
    if found is None:
        return from_disk(path, head=request.method == "HEAD")
    header = request.headers.get("Range")
    match = RANGE.fullmatch(header) if header else None
    if match is None:
        if request.method == "HEAD":
            return web.Response(headers={**found.headers, "Content-Length": str(found.size)})
        if found.data is None:
            raise web.HTTPRequestRangeNotSatisfiable()  # whole bodies of small files only
        return web.Response(body=found.data, headers=found.headers)
    start, end = int(match[1]), min(int(match[2]), found.size - 1)
    response = web.Response(
        status=206, body=found.read(start, end - start + 1), headers=found.headers
    )
    response.headers["Content-Range"] = f"bytes {start}-{end}/{found.size}"
    return response


def confined(path: str) -> bool:
    """No empty, `.` or `..` segment: the path stays under the root."""
    return all(part not in ("", ".", "..") for part in path.split("/"))


def from_disk(path: str, head: bool) -> web.Response:
    """The real file at `path` under the root, read on the event loop (open, fstat, one
    pread, close: microseconds for a file in the page cache, cheaper than a thread hop)."""
    if not confined(path):
        raise web.HTTPNotFound()
    try:
        fd = os.open(f"{ROOT}/{path}", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        raise web.HTTPNotFound() from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise web.HTTPNotFound()
        data = b"" if head else os.pread(fd, info.st_size, 0)
    finally:
        os.close(fd)
    headers = disk_headers(path, info)
    if head:
        return web.Response(headers={**headers, "Content-Length": str(info.st_size)})
    return web.Response(body=data, headers=headers)


def disk_headers(path: str, info: os.stat_result) -> dict[str, str]:
    """The headers of this version of the file at `path`, built once (DISK_HEADERS)."""
    identity = (info.st_ino, info.st_mtime_ns, info.st_size)
    known = DISK_HEADERS.get(path)
    if known is not None and known[0] == identity:
        return known[1]
    headers = file_headers(stand_in_digest(path, info.st_mtime_ns), info.st_mtime)
    DISK_HEADERS[path] = (identity, headers)
    return headers


async def store(request: web.BaseRequest, path: str) -> web.Response:
    """PUT: the body, made durable in one worker-thread hop (bench/floor_put.py), then 201."""
    if not confined(path):
        raise web.HTTPBadRequest()
    body = await request.content.read()  # bounded by what the bench sends (1 MiB at most)
    puts = PUTS[0]
    # The content type only where a row records it: the other floors do not parse it.
    args = (path, body) if puts.rows is None else (path, body, request.content_type)
    stored = await asyncio.get_running_loop().run_in_executor(puts.executor, puts.store_sync, *args)
    FILES.pop(path, None)  # a test file replaced: served from disk from now on
    disk_headers(path, stored.info)  # recorded as it is stored, as artifactd records its row
    return web.json_response(
        {"path": stored.path, "size": stored.size, "sha256": stored.sha256},
        status=201,
        headers={"ETag": f'"{stored.sha256[:32]}"', "Location": f"/files/{path}"},
    )


async def put_file(request: web.Request) -> web.Response:
    return await store(request, request.match_info["path"])


@web.middleware
async def common_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = request[STARTED_AT] = time.perf_counter()
    request_id = request[REQUEST_ID] = f"0123456789abcdef{next(_ids):08x}"
    response = await handler(request)
    add_common_headers(response, request_id, started)
    return response


def add_common_headers(response: web.StreamResponse, request_id: str, started: float) -> None:
    headers = response.headers
    headers["X-Request-Id"] = request_id
    headers["X-Response-Time"] = f"{(time.perf_counter() - started) * 1000:.3f}ms"
    headers["X-Content-Type-Options"] = "nosniff"


async def low_level_handler(request: web.BaseRequest) -> web.StreamResponse:
    """The middleware and the route in one: what the low-level server runs per request."""
    started = request[STARTED_AT] = time.perf_counter()
    request_id = request[REQUEST_ID] = f"0123456789abcdef{next(_ids):08x}"
    raw = request.rel_url.raw_path
    if not raw.startswith("/files/"):
        raise web.HTTPNotFound()
    path = raw[len("/files/") :]
    try:
        if request.method == "PUT":
            response = await store(request, path)
        else:
            response = answer(request, path)
    except web.HTTPException as exc:
        response = web.Response(status=exc.status, text=exc.text)
    add_common_headers(response, request_id, started)
    return response


_pending_lines: list[str] = []


def _flush_lines() -> None:
    lines = _pending_lines[:]
    _pending_lines.clear()
    sys.stderr.write("".join(lines))


class AccessLog(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_: float) -> None:
        if not _pending_lines:
            asyncio.get_running_loop().call_soon(_flush_lines)
        _pending_lines.append(
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {request.remote or '-'} "
            f'"{request.method} {request.raw_path}" {response.status} {response.body_length} '
            f"{time_ * 1000:.3f}ms rid={request.get(REQUEST_ID, '-')}\n"
        )

    @property
    def enabled(self) -> bool:
        return True


def load_files(root: Path, *, fsync: bool = True, metadata: bool = False) -> None:
    """The test files directly in `root` into memory, the headers of every file below it
    (the random keys, as artifactd has their rows before it starts); PUTs under `root`."""
    global ROOT
    ROOT = root
    PUTS[:] = [DurablePuts(root, fsync=fsync, metadata=metadata)]
    for path in sorted(root.iterdir()):
        if path.is_file():
            FILES[path.name] = File(path)
    for directory, subdirectories, names in os.walk(root):
        if directory == str(root) and META_DIR in subdirectories:
            subdirectories.remove(META_DIR)  # the metadata floor's database: not served
        if directory != str(root):
            for name in names:
                full = os.path.join(directory, name)
                disk_headers(os.path.relpath(full, root), os.stat(full, follow_symlinks=False))


def create_app(root: Path, *, fsync: bool = True, metadata: bool = False) -> web.Application:
    load_files(root, fsync=fsync, metadata=metadata)
    app = web.Application(middlewares=[common_headers])
    app.router.add_get("/files/{path:.*}", get_file)
    app.router.add_put("/files/{path:.*}", put_file)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--low-level", action="store_true", help="no Application: web.Server")
    parser.add_argument("--no-fsync", action="store_true", help="PUTs without fsync, as nginx")
    parser.add_argument(
        "--metadata", action="store_true", help="a durable SQLite row per PUT before its rename"
    )
    args = parser.parse_args(argv)
    if args.low_level:
        load_files(args.root.resolve(), fsync=not args.no_fsync, metadata=args.metadata)

        async def serve_low_level() -> None:  # web.Server wants the running loop
            # The access logger is the Server's own option: a ServerRunner, unlike an
            # AppRunner, passes none of its keyword arguments on to the Server.
            server = web.Server(low_level_handler, access_log_class=AccessLog)
            await serve(server, args.host, args.port)

        uvloop.run(serve_low_level())
    else:
        app = create_app(args.root.resolve(), fsync=not args.no_fsync, metadata=args.metadata)
        uvloop.run(serve(app, args.host, args.port, access_log_class=AccessLog))
    return 0


if __name__ == "__main__":
    sys.exit(main())
