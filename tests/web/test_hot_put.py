"""PUTs routed by the /files/ resource alone answer exactly as through the Application.

Two servers run as `serve` runs them (AppRunner, TCPSite), one with the hot paths in front
of the Application and one without, each on its own root with the same start. The same
sequence of PUTs goes to both; status, headers (but the per-request ones) and body (but the
time of creation and expiry) must be the same, and the PUTs the resource routes must not
have reached the Application's router.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.tokens import TokenStore
from artifactd.web.hotput import HotPut
from artifactd.web.keys import METRICS
from artifactd.web.pipeline import FILES_ROUTE_LABEL
from tests.web.conftest import store_bytes
from tests.web.serving import Answer, Served, client_session, fetch, serving

# (target, headers, body, whether it skips the router)
PUTS: list[tuple[str, dict[str, str], bytes, bool]] = [
    ("/files/new.bin", {}, b"one", True),  # 201
    ("/files/new.bin", {"Content-Type": "text/plain"}, b"two", True),  # 200, replaced
    ("/files/new.bin", {"If-None-Match": "*"}, b"three", True),  # 412
    ("/files/new.bin", {"If-Match": '"nope"'}, b"three", True),  # 412
    ("/files/kept.bin", {}, b"kept", True),  # the same bytes again: kept
    ("/files/dir/deeper/file.bin?ttl=1h", {"X-Request-Id": "ci.7"}, b"x" * 1500, True),
    ("/files/ttl.bin", {"X-Artifact-TTL": "soon"}, b"x", True),  # 400
    ("/files/sum.bin", {"X-Checksum-Sha256": "0" * 64}, b"x", True),  # 400 mismatch
    ("/files/new.bin/below.bin", {}, b"x", True),  # 409 below a file
    ("/files/dir", {}, b"x", True),  # 409 onto a directory
    ("/files/.artifactd/x", {}, b"x", True),  # 404 internal
    ("/files/a/../b", {}, b"x", True),  # 400, the handler's refusal
    ("/files/big.bin", {}, b"y" * 3000, True),  # 413 over --max-upload-size
    ("/files/dir/", {}, b"x", False),  # a directory URL: the router's 405
    ("/files/expect.bin", {"Expect": "100-continue"}, b"x", False),  # the Expect handler
]


def _comparable(answer: Answer) -> Answer:
    """The answer without the times a version was created at and expires at (the two
    servers store it a moment apart), which must be there."""
    status, headers, body = answer
    if headers.get("content-type", "").startswith("application/json") and b'"created_at"' in body:
        document = json.loads(body)
        assert document.pop("created_at").endswith("Z")
        expires = document.pop("expires_at")
        document["expires"] = expires is not None
        body = json.dumps(document).encode()
    return status, headers, body


async def _root(path: Path) -> Path:
    path.mkdir()
    store = await FilesystemStore.create(path)
    await store_bytes(store, "kept.bin", b"kept")
    await store_bytes(store, "dir/there.bin", b"there")
    await store.close()
    return path


@contextlib.asynccontextmanager
async def hot_and_plain(
    base: Settings, hot_root: Path, plain_root: Path
) -> AsyncIterator[tuple[Served, Served, aiohttp.ClientSession]]:
    """The same settings served with the routed PUTs and without, and a client."""
    async with (
        serving(replace(base, root=hot_root), hot=True) as hot,
        serving(replace(base, root=plain_root), hot=False) as plain,
        client_session() as session,
    ):
        yield hot, plain, session


@pytest.mark.parametrize("changes", [{}, {"private": True}], ids=["public", "private"])
async def test_routed_puts_answer_as_the_application(
    tmp_path: Path, changes: dict[str, object]
) -> None:
    base = replace(Settings(root=tmp_path), max_upload_size=2048, **changes)  # type: ignore[arg-type]
    hot_root, plain_root = await _root(tmp_path / "hot"), await _root(tmp_path / "plain")
    async with hot_and_plain(base, hot_root, plain_root) as (hot, plain, session):
        statuses = []
        for target, headers, body, routed in PUTS:
            hot.reached_application.clear()
            hot_answer = await fetch_put(session, hot.url, target, headers, body)
            plain_answer = await fetch_put(session, plain.url, target, headers, body)
            assert _comparable(hot_answer) == _comparable(plain_answer), (target, headers)
            assert bool(hot.reached_application) is not routed, (target, hot_answer[0])
            statuses.append(hot_answer[0])
        assert statuses == [
            201,
            200,
            412,
            412,
            200,
            201,
            400,
            400,
            409,
            409,
            404,
            400,
            413,
            405,
            201,
        ]
        assert (hot_root / "dir/deeper/file.bin").read_bytes() == b"x" * 1500
        hot_tally = hot.app[METRICS].traffic
        plain_tally = plain.app[METRICS].traffic
        assert hot_tally.requests == plain_tally.requests
        assert hot_tally.requests["PUT", FILES_ROUTE_LABEL, 201] == 3
        assert hot_tally.request_bytes == plain_tally.request_bytes
        assert hot_tally.in_flight == 0


async def test_rate_limited_puts_answer_as_the_application(tmp_path: Path) -> None:
    """The access policy is the middleware's, so the limit counts routed PUTs as before."""
    base = replace(Settings(root=tmp_path), rate_limit="2/min")
    hot_root, plain_root = await _root(tmp_path / "hot"), await _root(tmp_path / "plain")
    async with hot_and_plain(base, hot_root, plain_root) as (hot, plain, session):
        statuses = []
        for name in ("a", "b", "c"):
            hot_answer = await fetch_put(session, hot.url, f"/files/{name}", {}, b"1")
            plain_answer = await fetch_put(session, plain.url, f"/files/{name}", {}, b"1")
            assert _comparable(hot_answer) == _comparable(plain_answer)
            statuses.append(hot_answer[0])
        assert statuses == [201, 201, 429]
        assert hot.reached_application == []


async def test_token_checks_answer_as_the_application(tmp_path: Path) -> None:
    """The access policy is the middleware's: a token limited to a prefix, a read token,
    none at all, each refused or admitted as before."""
    hot_root, plain_root = await _root(tmp_path / "hot"), await _root(tmp_path / "plain")
    tokens = {}
    for root in (hot_root, plain_root):
        store = TokenStore(root)
        tokens[root, "ci"] = await asyncio.to_thread(store.add, "ci", "write", "ci/")
        tokens[root, "reader"] = await asyncio.to_thread(store.add, "reader", "read")
    base = Settings(root=hot_root)
    async with hot_and_plain(base, hot_root, plain_root) as (hot, plain, session):
        statuses = []
        for target, token in [
            ("/files/ci/a.bin", "ci"),
            ("/files/other/a.bin", "ci"),
            ("/files/ci", "ci"),
            ("/files/ci/b.bin", "reader"),
            ("/files/ci/c.bin", None),
        ]:
            answers = []
            for served, root in ((hot, hot_root), (plain, plain_root)):
                headers = (
                    {} if token is None else {"Authorization": f"Bearer {tokens[root, token]}"}
                )
                answers.append(await fetch_put(session, served.url, target, headers, b"1"))
            assert _comparable(answers[0]) == _comparable(answers[1]), (target, token)
            statuses.append(answers[0][0])
        assert statuses == [201, 403, 403, 403, 401]
        assert hot.reached_application == []


async def test_installed_in_front_of_the_application(tmp_path: Path) -> None:
    async with serving(Settings(root=await _root(tmp_path / "r")), hot=True) as served:
        handlers = []
        handler = served.runner.server.request_handler if served.runner.server else None
        while handler is not None:
            handlers.append(type(handler))
            handler = getattr(handler, "_application_handler", None) or getattr(
                handler, "_next", None
            )
        assert HotPut in handlers


async def fetch_put(
    session: aiohttp.ClientSession, base: str, target: str, headers: dict[str, str], body: bytes
) -> Answer:
    """`fetch` of a PUT with a body."""
    return await fetch(session, base, "PUT", target, headers, body)
