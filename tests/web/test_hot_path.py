"""The hot path answers exactly as the Application would, and only when it may.

Two servers run on one storage root, as `serve` runs them (AppRunner, TCPSite): one with
the hot path in front of the Application, one without. Every request of a matrix goes to
both; status, headers (but the per-request id, time and date) and body must be the same,
and the requests the hot path is meant to answer must not have reached the Application.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from blockbuster import BlockBuster

from artifactd.http.digests import etag_for_digest
from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore, hotcache
from artifactd.store.memory import MemoryStore
from artifactd.web import middlewares as middlewares_module
from artifactd.web.app import create_app
from artifactd.web.download.hot import HotPath
from artifactd.web.keys import METRICS, REQUEST_ID, STARTED_AT
from artifactd.web.metrics import metrics_middleware
from artifactd.web.pipeline import FILES_ROUTE_LABEL, PIPELINE, begin_request
from tests.web.conftest import store_bytes
from tests.web.serving import fetch, serving

SMALL = bytes(range(256)) * 16  # 4 KiB: kept in memory by the hot cache
LARGE = bytes(range(251)) * 1200  # ~294 KiB: above the inline size, a descriptor when hot
TEXT = b"compressible line\n" * 200  # text/plain, worth gzip


@pytest.fixture
async def root(storage_root: Path) -> Path:
    store = await FilesystemStore.create(storage_root)
    await store_bytes(store, "small.bin", SMALL)
    await store_bytes(store, "big/large.bin", LARGE)
    await store_bytes(store, "notes.txt", TEXT)
    await store_bytes(store, "brief.txt", b"short text\n")
    await store_bytes(store, "soon-gone.bin", b"x" * 10, expires_at=time.time() + 2)
    await store.close()
    return storage_root


# (method, target, headers, whether the hot path should answer it once warm); "ETAG"
# stands for the ETag of small.bin
MATRIX: list[tuple[str, str, dict[str, str], bool]] = [
    ("GET", "/files/small.bin", {}, True),
    ("GET", "/files/small.bin", {"X-Request-Id": "my-build.42"}, True),
    ("GET", "/files/small.bin", {"X-Request-Id": "bad id with spaces"}, True),
    ("GET", "/files/small.bin", {"Range": "bytes=10-19"}, True),
    ("GET", "/files/small.bin", {"Range": "bytes=-5"}, True),
    ("GET", "/files/small.bin", {"Range": "bytes=0-1,5-6"}, False),  # multipart: streamed
    ("GET", "/files/small.bin", {"Range": "bytes=99999-"}, True),  # 416
    ("GET", "/files/small.bin", {"Range": "bytes=10-19", "If-Range": '"nope"'}, True),
    ("GET", "/files/small.bin", {"If-None-Match": "ETAG"}, True),  # 304
    ("GET", "/files/small.bin", {"If-None-Match": '"other"'}, True),
    ("GET", "/files/small.bin", {"If-Match": '"other"'}, False),  # 412: an error answer
    ("GET", "/files/small.bin", {"If-Modified-Since": "Sun, 01 Jan 2190 00:00:00 GMT"}, True),
    ("GET", "/files/small.bin", {"If-Unmodified-Since": "Sun, 01 Jan 1990 00:00:00 GMT"}, False),
    ("GET", "/files/small.bin", {"Expect": "100-continue"}, False),
    ("GET", "/files/small.bin", {"Content-Length": "0"}, True),  # no body (the mix client's)
    ("GET", "/files/small.bin?wait=1", {}, False),
    ("GET", "/files/./small.bin", {}, True),  # the dot segment is dropped
    ("GET", "/files/%73mall.bin", {}, True),
    ("HEAD", "/files/small.bin", {}, True),
    ("HEAD", "/files/small.bin", {"Range": "bytes=10-19"}, True),
    ("HEAD", "/files/small.bin", {"Range": "bytes=0-1,5-6"}, False),  # multipart
    ("HEAD", "/files/small.bin", {"If-None-Match": "ETAG"}, True),  # 304
    ("HEAD", "/files/big/large.bin", {}, True),  # no body to send: any size
    ("HEAD", "/files/notes.txt", {"Accept-Encoding": "gzip"}, False),
    ("HEAD", "/files/missing.bin", {}, True),  # 404
    ("GET", "/files/big/large.bin", {}, False),  # above the inline size: sendfile
    ("GET", "/files/big/large.bin", {"Range": "bytes=1000-70999"}, True),  # page cache
    ("GET", "/files/big/", {}, False),
    ("GET", "/files/big", {}, False),  # a directory: 301
    ("GET", "/files/notes.txt", {}, True),  # compressible, but gzip not accepted
    ("GET", "/files/notes.txt", {"Accept-Encoding": "gzip"}, False),
    ("GET", "/files/brief.txt", {"Accept-Encoding": "gzip"}, True),  # too short to compress
    ("GET", "/files/missing.bin", {}, True),  # 404: nothing there, no link on the way
    ("GET", "/files/no/such/dir.bin", {}, True),
    ("GET", "/files/small.bin/below.bin", {}, True),  # below a file (ENOTDIR)
    ("GET", "/files/.artifactd/metadata.db", {}, False),
    ("GET", "/files/a/../small.bin", {}, False),  # 400
    ("GET", "/files/a%2F..%2Fsmall.bin", {}, False),
    ("DELETE", "/files/nothing", {}, False),
]


async def test_hot_answers_are_the_applications_answers(
    root: Path, blockbuster: BlockBuster
) -> None:
    # sendfile of pages already cached runs on the loop by design (see web/download/zerocopy.py).
    blockbuster.functions["os.sendfile"].deactivate()
    settings = Settings(root=root)
    async with (
        serving(settings, hot=True) as hot,
        serving(settings, hot=False) as plain,
        aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=["Accept-Encoding"]) as s,
    ):
        status, first, body = await fetch(s, plain.url, "GET", "/files/small.bin", {})
        assert status == 200, body
        etag = first["etag"]
        for method, target, headers, answered_hot in MATRIX:
            headers = {k: (etag if v == "ETAG" else v) for k, v in headers.items()}
            await fetch(s, hot.url, method, target, headers)  # warms the hot cache
            hot.reached_application.clear()
            hot_answer = await fetch(s, hot.url, method, target, headers)
            assert hot_answer == await fetch(s, plain.url, method, target, headers), (
                method,
                target,
                headers,
            )
            reached = bool(hot.reached_application)
            assert reached is not answered_hot, (method, target, headers, hot_answer[0])


async def test_answers_carry_the_common_headers_and_are_counted(root: Path) -> None:
    settings = Settings(root=root, keepalive_timeout=0)  # keep-alive off: Connection: close
    async with serving(settings, hot=True) as hot, aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(
                hot.url + "/files/small.bin", headers={"X-Request-Id": "ci-7"}
            ) as response:
                assert await response.read() == SMALL
                assert response.headers["X-Request-Id"] == "ci-7"
                assert response.headers["X-Response-Time"].endswith("ms")
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert response.headers["Connection"] == "close"
        # Uploaded, so recorded: the first too (opened on the loop, store/filesystem/loopopen.py)
        assert hot.reached_application == []
        tally = hot.app[METRICS].traffic.requests
        assert tally["GET", FILES_ROUTE_LABEL, 200] == 3
        assert hot.app[METRICS].traffic.response_bytes >= 3 * len(SMALL)


async def test_a_new_version_or_expiry_is_seen_at_once(root: Path) -> None:
    async with serving(Settings(root=root), hot=True) as hot, aiohttp.ClientSession() as s:
        for _ in range(2):
            async with s.get(hot.url + "/files/soon-gone.bin") as response:
                assert response.status == 200
        async with s.put(hot.url + "/files/small.bin", data=b"replaced") as response:
            assert response.status in (200, 201)
        async with s.get(hot.url + "/files/small.bin") as response:
            assert await response.read() == b"replaced"
        await asyncio.sleep(2.1)  # soon-gone.bin expires
        async with s.get(hot.url + "/files/soon-gone.bin") as response:
            assert response.status == 404


async def test_a_hand_edited_small_file_is_served_new_within_the_cache_bound(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hotcache, "HOT_TTL_SECONDS", 0.05)
    async with serving(Settings(root=root), hot=True) as hot, aiohttp.ClientSession() as s:
        for _ in range(2):
            async with s.get(hot.url + "/files/brief.txt") as response:
                assert await response.read() == b"short text\n"
        assert hot.reached_application == []
        (root / "brief.txt").write_bytes(b"edited by hand\n")
        await asyncio.sleep(0.1)  # past the hot cache's bound
        async with s.get(hot.url + "/files/brief.txt") as response:
            assert await response.read() == b"edited by hand\n"
            etag = response.headers["ETag"]
        # Unrecorded bytes: digested in the worker thread by the Application, then recorded.
        assert hot.reached_application == ["GET /files/brief.txt"]
        assert etag == etag_for_digest(hashlib.sha256(b"edited by hand\n").hexdigest())
        async with s.get(hot.url + "/files/brief.txt") as response:
            assert (await response.read(), response.headers["ETag"]) == (b"edited by hand\n", etag)
        assert hot.reached_application == ["GET /files/brief.txt"]


@pytest.mark.parametrize(
    "changes", [{"private": True}, {"rate_limit": "600/min"}], ids=["private", "rate-limited"]
)
async def test_not_installed_where_the_middlewares_check_every_read(
    root: Path, changes: dict[str, object]
) -> None:
    settings = replace(Settings(root=root), **changes)  # type: ignore[arg-type]
    async with serving(settings, hot=True) as served:
        assert served.runner.server is not None
        assert not isinstance(served.runner.server.request_handler, HotPath)
    async with serving(Settings(root=root), hot=True) as served:
        assert served.runner.server is not None
        assert isinstance(served.runner.server.request_handler, HotPath)


async def test_the_hot_path_skips_only_middlewares_whose_work_the_pipeline_does(
    root: Path,
) -> None:
    """The hot path answers in front of these, calling `artifactd/web/pipeline.py` for what
    they do for its requests: a new middleware or on_response_prepare hook must be a step
    of the pipeline, or one the hot path's requests need not pass (and be added here)."""
    app = create_app(Settings(root=root), MemoryStore())
    names = [getattr(m, "__name__", repr(m)) for m in app.middlewares]
    assert names == ["metrics_middleware", "errors_middleware", "access"]
    assert app.middlewares[0] is metrics_middleware
    assert app.middlewares[1] is middlewares_module.errors_middleware
    assert list(app.on_response_prepare) == [app[PIPELINE].on_response_prepare]
    files_resources = [r for r in app.router.resources() if r.canonical.startswith("/files/")]
    assert [r.canonical for r in files_resources] == [FILES_ROUTE_LABEL]


async def test_a_failing_store_is_reported_by_the_application(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def out_of_descriptors(self: FilesystemStore, path: str) -> None:
        raise OSError(24, "Too many open files")

    # The loop's first step, for the hot path's open_now and the Application's open alike.
    monkeypatch.setattr(FilesystemStore, "_open_hot", out_of_descriptors)
    async with serving(Settings(root=root), hot=True) as hot, aiohttp.ClientSession() as s:
        async with s.get(hot.url + "/files/small.bin") as response:
            assert response.status == 500
            assert await response.json() == {"error": "internal error", "status": 500}
        assert hot.reached_application == ["GET /files/small.bin"]


def test_a_request_handed_on_keeps_its_clock_and_id() -> None:
    # The hot path begins a request before it knows whether it can answer it; the errors
    # middleware, if the request is handed on, must not start a second clock or id.
    request = make_mocked_request("GET", "/files/notes.txt")
    begin_request(request)
    started, request_id = request[STARTED_AT], request[REQUEST_ID]
    begin_request(request)
    assert (request[STARTED_AT], request[REQUEST_ID]) == (started, request_id)
