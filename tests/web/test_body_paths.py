"""Every download case down every body path gives the same answer.

A plan's body goes out one of several ways: one Response (inline), chunk by chunk
(sendfile off), by sendfile, by sendfile after a page-cache miss of an inline span, or
from the hot path in front of the Application, from the hot cache or (cold) opened on the
loop. The `body_path` fixture runs a server that
takes one of them; each case's answer (status, headers but the per-request ones, body)
must equal the plain Application's, and the case must really have gone that way.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from blockbuster import BlockBuster

from artifactd.http import conditional
from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.store.filesystem.hotcache import HotCache
from artifactd.store.readers import FileReader
from artifactd.web.download import gzip as gzip_module
from artifactd.web.download import plan as plan_module
from artifactd.web.download import send as send_module
from artifactd.web.download import zerocopy
from tests.web.conftest import store_bytes
from tests.web.serving import Answer, Served, client_session, fetch, serving

# Every file with a body is above the hot cache's in-memory size (64 KiB), so it is read
# through a descriptor and can take every path, and below the inline size (256 KiB).
DATA = bytes(range(251)) * 400
TEXT = b"compressible line\n" * 5000  # text/plain, worth gzip
STYLE = random.Random(0).randbytes(80 * 1024)  # its gzip is hardly smaller
STYLE_GZ = gzip.compress(STYLE, mtime=0)
LEGACY_DIGEST = "SHA-256=" + base64.b64encode(hashlib.sha256(DATA).digest()).decode()
# Server clocks (conditional.wall_clock) at which every file here has a strong
# Last-Modified (its second long over) or not (a date not reached yet), RFC 9110 §8.8.2.2.
SETTLED_CLOCK = time.time() + 30 * 86400
UNSETTLED_CLOCK = 1_000_000_000.0


@dataclass(frozen=True)
class Case:
    method: str
    target: str
    headers: dict[str, str]
    status: int
    body: bytes | None  # None: checked by `check` or against the reference only
    sends: str  # "span": one span of bytes, "multipart", "gzip", "nothing"
    hot: bool  # answered by the hot path (once the artifact is hot)
    clock: float | None = None  # the servers' wall clock for If-Range dates, if not the real one


CASES: dict[str, Case] = {
    "full": Case("GET", "/files/data.bin", {}, 200, DATA, "span", True),
    "single range": Case(
        "GET", "/files/data.bin", {"Range": "bytes=10-19"}, 206, DATA[10:20], "span", True
    ),
    "multi range": Case(
        "GET", "/files/data.bin", {"Range": "bytes=0-1,5-6"}, 206, None, "multipart", False
    ),
    "suffix": Case("GET", "/files/data.bin", {"Range": "bytes=-5"}, 206, DATA[-5:], "span", True),
    "304": Case("GET", "/files/data.bin", {"If-None-Match": "ETAG"}, 304, b"", "nothing", True),
    "412": Case("GET", "/files/data.bin", {"If-Match": '"other"'}, 412, None, "nothing", False),
    "416": Case("GET", "/files/data.bin", {"Range": "bytes=999999-"}, 416, None, "nothing", True),
    "If-Range match": Case(
        "GET",
        "/files/data.bin",
        {"Range": "bytes=0-3", "If-Range": "ETAG"},
        206,
        DATA[:4],
        "span",
        True,
    ),
    "If-Range mismatch": Case(
        "GET",
        "/files/data.bin",
        {"Range": "bytes=0-3", "If-Range": '"stale"'},
        200,
        DATA,
        "span",
        True,
    ),
    "If-Range date of a settled version": Case(
        "GET",
        "/files/data.bin",
        {"Range": "bytes=0-3", "If-Range": "LAST_MODIFIED"},
        206,
        DATA[:4],
        "span",
        True,
        clock=SETTLED_CLOCK,
    ),
    "If-Range date of a version within its second": Case(
        "GET",
        "/files/data.bin",
        {"Range": "bytes=0-3", "If-Range": "LAST_MODIFIED"},
        200,
        DATA,
        "span",
        True,
        clock=UNSETTLED_CLOCK,
    ),
    "Want-Digest": Case(
        "GET", "/files/data.bin", {"Want-Digest": "SHA-256;q=1, SHA;q=0.1"}, 200, DATA, "span", True
    ),
    "Want-Digest of a range": Case(
        "GET",
        "/files/data.bin",
        {"Want-Digest": "sha-256", "Range": "bytes=10-19"},
        206,
        DATA[10:20],
        "span",
        True,
    ),
    "Want-Repr-Digest refusing sha-256": Case(
        "GET", "/files/data.bin", {"Want-Repr-Digest": "sha-256=0"}, 200, DATA, "span", True
    ),
    "name with a space": Case("GET", "/files/a%20b.bin", {}, 200, DATA, "span", True),
    "name with a space, a range": Case(
        "GET", "/files/a%20b.bin", {"Range": "bytes=0-3"}, 206, DATA[:4], "span", True
    ),
    "HEAD": Case("HEAD", "/files/data.bin", {}, 200, b"", "nothing", True),
    "HEAD of a range": Case(
        "HEAD", "/files/data.bin", {"Range": "bytes=0-9"}, 206, b"", "nothing", True
    ),
    "gzip on the fly": Case(
        "GET", "/files/notes.txt", {"Accept-Encoding": "gzip"}, 200, None, "gzip", False
    ),
    "gzip sibling": Case(
        "GET", "/files/style.css", {"Accept-Encoding": "gzip"}, 200, STYLE_GZ, "span", False
    ),
    "stale gzip sibling is compressed afresh": Case(
        "GET", "/files/stale.txt", {"Accept-Encoding": "gzip"}, 200, None, "gzip", False
    ),
    "identity of a compressible file": Case("GET", "/files/notes.txt", {}, 200, TEXT, "span", True),
    "empty file": Case("GET", "/files/empty.bin", {}, 200, b"", "nothing", True),
}


@dataclass(frozen=True)
class BodyPath:
    name: str
    settings: dict[str, Any]
    hot: bool = False
    inline_read_bytes: int | None = None  # replaces INLINE_READ_BYTES: 0 inlines nothing
    page_cache_misses: bool = False  # FileReader.read_now finds nothing at hand
    sends_span_by: str | None = None  # the mechanism that must send a span's bytes
    cold: bool = False  # the hot cache never answers: each artifact opened on the loop


BODY_PATHS = [
    BodyPath("inline", {"sendfile": True}),
    BodyPath("chunked", {"sendfile": False}, inline_read_bytes=0, sends_span_by="chunked"),
    BodyPath("sendfile", {"sendfile": True}, inline_read_bytes=0, sends_span_by="sendfile"),
    BodyPath(
        "page-cache miss", {"sendfile": True}, page_cache_misses=True, sends_span_by="sendfile"
    ),
    BodyPath("hot", {"sendfile": True}, hot=True),
    BodyPath("cold", {"sendfile": True}, hot=True, cold=True),
]


@dataclass
class PathServer:
    served: Served
    used: list[str]  # the sending mechanisms each answer used, in order
    threads: list[str]  # the paths opened in a worker thread


@pytest.fixture
async def root(storage_root: Path) -> Path:
    store = await FilesystemStore.create(storage_root)
    await store_bytes(store, "data.bin", DATA)
    await store_bytes(store, "notes.txt", TEXT)
    await store_bytes(store, "style.css", STYLE)
    await store_bytes(store, "style.css.gz", STYLE_GZ)
    await store_bytes(store, "empty.bin", b"")
    await store_bytes(store, "stale.txt.gz", gzip.compress(b"an older version\n" * 100))
    await store_bytes(store, "stale.txt", TEXT)  # replaced after its sibling was made
    await store_bytes(store, "a b.bin", DATA)
    await store.close()
    long_ago = 1_000_000_000.0  # older than stale.txt, whatever the clock tick
    os.utime(storage_root / "stale.txt.gz", (long_ago, long_ago))
    return storage_root


@pytest.fixture(params=BODY_PATHS, ids=[p.name for p in BODY_PATHS])
def body_path(request: pytest.FixtureRequest, blockbuster: BlockBuster) -> BodyPath:
    # sendfile of pages already cached runs on the loop by design (see download/zerocopy.py).
    blockbuster.functions["os.sendfile"].deactivate()
    path: BodyPath = request.param
    return path


@asynccontextmanager
async def serving_by(
    path: BodyPath, root: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[PathServer]:
    """A server whose answers take `path`, recording the mechanisms that send bodies."""
    used: list[str] = []
    send_file_range = zerocopy.send_file_range
    stream_span = send_module._stream_span
    write_gzipped = gzip_module.write_gzipped
    open_sync = FilesystemStore._open_sync
    threads: list[str] = []

    def open_in_thread(store: FilesystemStore, artifact: str) -> FileReader:
        threads.append(artifact)
        return open_sync(store, artifact)

    async def by_sendfile(*args: Any) -> int:
        used.append("sendfile")
        return await send_file_range(*args)

    async def by_chunks(*args: Any) -> None:
        used.append("chunked")
        await stream_span(*args)

    async def by_gzip(*args: Any) -> None:
        used.append("gzip")
        await write_gzipped(*args)

    with monkeypatch.context() as patch:
        patch.setattr(send_module, "send_file_range", by_sendfile)
        patch.setattr(send_module, "_stream_span", by_chunks)
        patch.setattr(send_module, "write_gzipped", by_gzip)
        if path.inline_read_bytes is not None:
            patch.setattr(plan_module, "INLINE_READ_BYTES", path.inline_read_bytes)
        if path.page_cache_misses:
            patch.setattr(FileReader, "read_now", lambda *args, **kwargs: None)
        if path.cold:
            patch.setattr(HotCache, "checkout", lambda *args: None)
            patch.setattr(FilesystemStore, "_open_sync", open_in_thread)
        plan_module._plain_get.cache_clear()  # plans made under other settings
        try:
            async with serving(replace(Settings(root=root), **path.settings), hot=path.hot) as s:
                yield PathServer(s, used, threads)
        finally:
            plan_module._plain_get.cache_clear()


async def answer_of(served: Served, case: Case, validators: dict[str, str]) -> Answer:
    """The answer to `case`, with "ETAG" and "LAST_MODIFIED" replaced by data.bin's."""
    headers = {k: validators.get(v, v) for k, v in case.headers.items()}
    async with client_session() as session:
        return await fetch(session, served.url, case.method, case.target, headers)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_each_case_answers_alike_down_every_body_path(
    case: Case, body_path: BodyPath, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if case.clock is not None:
        clock = case.clock
        monkeypatch.setattr(conditional, "wall_clock", lambda: clock)
    async with serving(Settings(root=root), hot=False) as reference:
        async with client_session() as session:
            head = (await fetch(session, reference.url, "HEAD", "/files/data.bin", {}))[1]
        validators = {"ETAG": head["etag"], "LAST_MODIFIED": head["last-modified"]}
        expected = await answer_of(reference, case, validators)
    async with serving_by(body_path, root, monkeypatch) as server:
        await answer_of(server.served, case, validators)  # warms the hot cache
        server.used.clear()
        server.threads.clear()
        server.served.reached_application.clear()
        answer = await answer_of(server.served, case, validators)
        used, reached = list(server.used), bool(server.served.reached_application)
        threads = list(server.threads)

    assert answer == expected
    status, headers, body = answer
    assert status == case.status
    if case.body is not None:
        assert body == case.body
    check_case(case, headers, body)

    mechanisms = {"span": [], "multipart": ["chunked", "chunked"], "gzip": ["gzip"]}
    if case.sends == "span" and body_path.sends_span_by and not body_path.hot:
        assert used == [body_path.sends_span_by]
    elif case.sends == "nothing":
        assert used == []
    else:
        assert used == mechanisms[case.sends]
    if body_path.hot:
        assert reached is not case.hot
        if body_path.cold and case.hot:
            assert threads == []  # opened on the loop, every time
    else:
        assert reached


def check_case(case: Case, headers: dict[str, str], body: bytes) -> None:
    """What the reference itself must get right for the cases without a literal body."""
    if case.sends == "multipart":
        assert headers["content-type"] == "multipart/byteranges; boundary=BOUNDARY"
        size = len(DATA)
        assert f"Content-Range: bytes 0-1/{size}\r\n\r\n".encode() + DATA[0:2] in body
        assert f"Content-Range: bytes 5-6/{size}\r\n\r\n".encode() + DATA[5:7] in body
        # (Content-Length against the body: test_downloads, before the boundary is replaced)
    if case.sends == "gzip":
        assert gzip.decompress(body) == TEXT
        assert headers["content-encoding"] == "gzip"
        assert headers["transfer-encoding"] == "chunked"
        assert "content-length" not in headers
    if "Want-Digest" in case.headers:
        assert headers["digest"] == LEGACY_DIGEST
    elif "Want-Repr-Digest" in case.headers:
        assert "repr-digest" not in headers
    else:
        assert "digest" not in headers
    if case.target == "/files/a%20b.bin":
        assert headers["content-disposition"] == (
            "attachment; filename=\"a b.bin\"; filename*=UTF-8''a%20b.bin"
        )
    else:
        assert "content-disposition" not in headers
    if case.status == 416:
        assert headers["content-range"] == f"bytes */{len(DATA)}"
    if case.status in (412, 416):
        assert headers["content-type"].startswith("application/json")
    if case.status == 304:
        assert "content-length" not in headers
    if case.method == "HEAD":
        assert headers["content-length"] == ("10" if case.status == 206 else str(len(DATA)))
    if case.target == "/files/style.css":
        assert headers["content-encoding"] == "gzip"
        assert headers["content-type"] == "text/css"
    if case.target in ("/files/notes.txt", "/files/style.css", "/files/stale.txt"):
        assert headers["vary"] == "Accept-Encoding"
