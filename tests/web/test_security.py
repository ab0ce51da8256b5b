"""Tokens, scopes, prefixes, the no-token loopback rule and rate limiting, in-process.

The app is the real `create_app` with the security middlewares installed the way the app
factory is meant to (`install_security`: rate limit, then auth, inside errors_middleware).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from artifactd.durations import parse_rate
from artifactd.ratelimit import RateLimiter
from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.store.memory import MemoryStore
from artifactd.tokens import TokenFileError, TokenStore
from artifactd.web import expect
from artifactd.web.app import create_app
from artifactd.web.keys import SETTINGS, STORE
from artifactd.web.middlewares import errors_middleware
from artifactd.web.security import (
    ACCESS_POLICY,
    AccessPolicy,
    check_upload_allowed,
    install_security,
    warn_if_writes_refused,
)
from tests.web.conftest import Auth, Client, ClientFactory, basic, bearer, store_bytes

MakeClient = Callable[..., Awaitable[Client]]
CHALLENGE = 'Bearer realm="artifactd"'
BASIC_CHALLENGE = 'Basic realm="artifactd", charset="UTF-8"'
BAD_PATH = URL("/files/a/%2e%2e/b", encoded=True)


@pytest.fixture
def tokens(storage_root: Path) -> dict[str, str]:
    """One token per kind, created before the event loop runs (as the CLI would)."""
    store = TokenStore(storage_root)
    return {
        "read": store.add("reader", "read"),
        "write": store.add("writer", "write"),
        "admin": store.add("boss", "admin"),
        "myproj": store.add("myproj-ci", "write", prefix="myproj/"),
        "myproj-read": store.add("myproj-dash", "read", prefix="myproj/"),
    }


@pytest.fixture
def make_client(
    aiohttp_client: ClientFactory, fs_store: FilesystemStore, storage_root: Path
) -> MakeClient:
    async def make(
        *, private: bool = False, rate_limit: str | None = None, trusted: tuple[str, ...] = ()
    ) -> Client:
        await store_bytes(fs_store, "public.txt", b"hello\n")
        await store_bytes(fs_store, "myproj/1/app.bin", b"app")
        await store_bytes(fs_store, "other/1/app.bin", b"other")
        settings = Settings(
            root=storage_root, private=private, rate_limit=rate_limit, trusted_proxy=trusted
        )
        return await aiohttp_client(create_app(settings, fs_store))

    return make


async def error_of(response: Any) -> dict[str, Any]:
    assert response.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = json.loads(await response.text())
    assert set(body) == {"error", "status"}
    assert body["status"] == response.status
    return body


# -- writes need a write token -----------------------------------------------------------


async def test_write_without_token_is_401_with_a_bearer_challenge(
    make_client: MakeClient, tokens: dict[str, str]
) -> None:
    client = await make_client()
    for method in ("PUT", "POST", "DELETE"):
        response = await client.request(method, "/files/a/b.txt", data=b"x")
        assert response.status == 401, method
        assert response.headers["WWW-Authenticate"] == CHALLENGE
        assert (await error_of(response))["error"] == "authentication required"
    assert (await client.get("/files/a/b.txt")).status == 404  # nothing was written


@pytest.mark.parametrize(
    "authorization",
    ["Bearer adt_not-a-real-token", "Bearer", "Bearer ", "bearer adt_x y", "Bearer \u00e9t\u00e9"],
)
async def test_a_bad_token_is_401_invalid_token(
    make_client: MakeClient, tokens: dict[str, str], authorization: str
) -> None:
    client = await make_client()
    response = await client.put("/files/a.txt", data=b"x", headers={"Authorization": authorization})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == CHALLENGE + ', error="invalid_token"'
    await error_of(response)


@pytest.mark.parametrize("authorization", ["Digest username=x", "Negotiate abc", "Token xyz"])
async def test_another_auth_scheme_counts_as_no_token(
    make_client: MakeClient, tokens: dict[str, str], authorization: str
) -> None:
    client = await make_client()
    headers = {"Authorization": authorization}
    response = await client.put("/files/a.txt", data=b"x", headers=headers)
    assert response.status == 401
    assert response.headers.getall("WWW-Authenticate") == [CHALLENGE]


@pytest.mark.parametrize("user", ["", "ci", "user with spaces", "\u00e9t\u00e9"])
async def test_basic_takes_the_token_as_password_whatever_the_user(
    make_client: MakeClient, tokens: dict[str, str], user: str
) -> None:
    client = await make_client()
    headers = basic(tokens["write"], user=user)
    assert (await client.put("/files/a.txt", data=b"x", headers=headers)).status == 201


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic",
        "Basic ",
        "Basic !!!not-base64!!!",
        "Basic eDp5=",  # bad padding
        "Basic " + base64.b64encode(b"no-colon-at-all").decode(),
        "Basic " + base64.b64encode(b"user:").decode(),  # empty password
        "Basic " + base64.b64encode(b"user:\xff\xfe").decode(),  # not UTF-8
        "Basic " + base64.b64encode(b"user:adt_not-a-real-token").decode(),
        "basic " + base64.b64encode(b":adt_x").decode() + " trailing",
    ],
)
async def test_a_bad_basic_credential_is_401_with_a_basic_challenge(
    make_client: MakeClient, tokens: dict[str, str], authorization: str
) -> None:
    client = await make_client()
    response = await client.put("/files/a.txt", data=b"x", headers={"Authorization": authorization})
    assert response.status == 401
    assert response.headers.getall("WWW-Authenticate") == [
        CHALLENGE + ', error="invalid_token"',
        BASIC_CHALLENGE,
    ]
    await error_of(response)
    assert (await client.get("/files/a.txt")).status == 404


async def test_the_basic_challenge_is_only_sent_where_basic_was(
    make_client: MakeClient, tokens: dict[str, str]
) -> None:
    client = await make_client()
    bad_bearer = await client.put("/files/a.txt", data=b"x", headers=bearer("adt_nope"))
    assert bad_bearer.headers.getall("WWW-Authenticate") == [CHALLENGE + ', error="invalid_token"']
    missing = await client.put("/files/a.txt", data=b"x")
    assert missing.headers.getall("WWW-Authenticate") == [CHALLENGE]


async def test_a_read_token_cannot_write(
    make_client: MakeClient, tokens: dict[str, str], auth: Auth
) -> None:
    client = await make_client()
    response = await client.put("/files/a.txt", data=b"x", headers=auth(tokens["read"]))
    assert response.status == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert "needs write" in (await error_of(response))["error"]


async def test_write_and_admin_tokens_upload_and_delete(
    make_client: MakeClient, tokens: dict[str, str], auth: Auth
) -> None:
    client = await make_client()
    for kind in ("write", "admin"):
        headers = auth(tokens[kind])
        assert (await client.put(f"/files/{kind}.txt", data=b"x", headers=headers)).status == 201
        assert (await client.delete(f"/files/{kind}.txt", headers=headers)).status == 204


async def test_scheme_is_case_insensitive(make_client: MakeClient, tokens: dict[str, str]) -> None:
    client = await make_client()
    headers = {"Authorization": f"bEaReR {tokens['write']}"}
    assert (await client.put("/files/x.txt", data=b"x", headers=headers)).status == 201
    encoded = basic(tokens["write"])["Authorization"].split()[1]
    headers = {"Authorization": f"bAsIc {encoded}"}
    assert (await client.put("/files/y.txt", data=b"x", headers=headers)).status == 201


async def test_unknown_methods_need_a_write_token_too(
    make_client: MakeClient, tokens: dict[str, str], auth: Auth
) -> None:
    client = await make_client()
    assert (await client.request("PATCH", "/files/public.txt")).status == 401
    response = await client.request("PATCH", "/files/public.txt", headers=auth(tokens["write"]))
    assert response.status == 405


async def test_a_token_with_a_bad_path_gets_the_handlers_400(
    make_client: MakeClient, tokens: dict[str, str], auth: Auth
) -> None:
    client = await make_client()
    unauthenticated = await client.put(BAD_PATH, data=b"x")
    assert unauthenticated.status == 401  # never let an unauthenticated write through
    for kind in ("write", "myproj"):
        response = await client.put(BAD_PATH, data=b"x", headers=auth(tokens[kind]))
        assert response.status == 400, kind


# -- reads ------------------------------------------------------------------------------


async def test_reads_are_public_by_default(
    make_client: MakeClient, tokens: dict[str, str], auth: Auth
) -> None:
    client = await make_client()
    assert (await client.get("/files/public.txt")).status == 200
    assert (await client.head("/files/other/1/app.bin")).status == 200
    assert (await client.get("/files/")).status == 200
    assert (await client.get("/api/v1/stats")).status == 200
    # A bad token does not matter where none is needed.
    bad = await client.get("/files/public.txt", headers=auth("adt_bogus"))
    assert bad.status == 200


@pytest.mark.parametrize(
    "url", ["/files/public.txt", "/files/", "/api/v1/stats", "/api/v1/artifacts", "/"]
)
async def test_private_reads_need_a_token(
    make_client: MakeClient, tokens: dict[str, str], url: str, auth: Auth
) -> None:
    client = await make_client(private=True)
    missing = await client.get(url, allow_redirects=False)
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"] == CHALLENGE
    for kind in ("read", "write", "admin"):
        response = await client.get(url, headers=auth(tokens[kind]), allow_redirects=False)
        assert response.status in (200, 301), (kind, response.status)


async def test_private_head_needs_a_token(
    make_client: MakeClient, tokens: dict[str, str], auth: Auth
) -> None:
    client = await make_client(private=True)
    assert (await client.head("/files/public.txt")).status == 401
    assert (await client.head("/files/public.txt", headers=auth(tokens["read"]))).status == 200


async def test_healthz_and_metrics_never_need_a_token(
    make_client: MakeClient, tokens: dict[str, str]
) -> None:
    client = await make_client(private=True)
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/metrics")).status == 200


# -- prefixes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("PUT", "/files/myproj/2/app.bin", 201),
        ("PUT", "/files/my%70roj/3/app.bin", 201),  # judged after decoding, like the handler
        ("DELETE", "/files/myproj/1/app.bin", 204),
        ("POST", "/files/myproj/", 200),  # the multipart form answers with the listing
        ("PUT", "/files/other/2/app.bin", 403),
        ("PUT", "/files/myproj-other/app.bin", 403),
        ("PUT", "/files/myproj", 403),  # the prefix is a directory, not a file
        ("DELETE", "/files/other/1/app.bin", 403),
        ("POST", "/files/", 403),
        ("POST", "/files/other/", 403),
    ],
)
async def test_a_prefixed_token_writes_only_under_its_prefix(
    make_client: MakeClient, tokens: dict[str, str], method: str, url: str, status: int, auth: Auth
) -> None:
    client = await make_client()
    data: Any = b"x"
    if method == "POST":
        from aiohttp import FormData

        data = FormData()
        data.add_field("file", b"x", filename="f.bin")
    response = await client.request(method, url, data=data, headers=auth(tokens["myproj"]))
    assert response.status == status, await response.text()
    if status == 403:
        assert "limited to myproj/" in (await error_of(response))["error"]


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/files/myproj/1/app.bin", 200),
        ("/files/myproj/", 200),
        ("/files/myproj", 301),
        ("/files/other/1/app.bin", 403),
        ("/files/", 403),
        ("/api/v1/artifacts/myproj/1/app.bin", 200),
        ("/api/v1/artifacts/other/1/app.bin", 403),
        ("/api/v1/artifacts?prefix=myproj/", 200),
        ("/api/v1/artifacts?prefix=myproj/1/", 200),
        ("/api/v1/artifacts?prefix=myproj", 403),  # would list myproj-other/ too
        ("/api/v1/artifacts", 403),
        ("/api/v1/stats", 403),
        ("/api/v1/events", 403),
    ],
)
async def test_a_prefixed_token_reads_only_under_its_prefix_when_private(
    make_client: MakeClient, tokens: dict[str, str], url: str, status: int, auth: Auth
) -> None:
    client = await make_client(private=True)
    response = await client.get(url, headers=auth(tokens["myproj-read"]), allow_redirects=False)
    assert response.status == status


async def test_a_prefixed_token_reads_everything_public(
    make_client: MakeClient, tokens: dict[str, str], auth: Auth
) -> None:
    client = await make_client()
    response = await client.get("/files/other/1/app.bin", headers=auth(tokens["myproj-read"]))
    assert response.status == 200


# -- no tokens at all: writes only from this host ------------------------------------------


async def test_without_tokens_loopback_clients_may_write(make_client: MakeClient) -> None:
    client = await make_client()
    assert (await client.put("/files/local.txt", data=b"x")).status == 201
    assert (await client.delete("/files/local.txt")).status == 204


async def test_without_tokens_a_loopback_proxy_relaying_others_is_refused(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    for header in ("X-Forwarded-For", "X-Real-IP", "Forwarded"):
        value = "for=198.51.100.1" if header == "Forwarded" else "198.51.100.1"
        response = await client.put("/files/x.txt", data=b"x", headers={header: value})
        assert response.status == 403, header
        assert "artifactd token add" in (await error_of(response))["error"]


async def test_without_tokens_forwarded_for_cannot_fake_loopback(make_client: MakeClient) -> None:
    # The peer is loopback but not a trusted proxy: its X-Forwarded-For proves nothing.
    client = await make_client()
    response = await client.put("/files/x.txt", data=b"x", headers={"X-Forwarded-For": "127.0.0.1"})
    assert response.status == 403


async def test_without_tokens_a_trusted_local_proxy_passes_loopback_clients_only(
    make_client: MakeClient,
) -> None:
    client = await make_client(trusted=("127.0.0.1/32",))
    remote = await client.put("/files/x.txt", data=b"x", headers={"X-Forwarded-For": "10.1.2.3"})
    assert remote.status == 403
    local = await client.put("/files/x.txt", data=b"x", headers={"X-Forwarded-For": "127.0.0.1"})
    assert local.status == 201
    forged = await client.put(
        "/files/x.txt", data=b"x", headers={"X-Forwarded-For": "127.0.0.1, 10.1.2.3"}
    )
    assert forged.status == 403


def mocked_request(method: str, path: str, peer: tuple[str, int] | None, **kwargs: Any) -> Any:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        peer if name == "peername" else default
    )
    return make_mocked_request(method, path, transport=transport, **kwargs)


@pytest.mark.parametrize(
    ("peer", "allowed"),
    [
        (("127.0.0.1", 5000), True),
        (("127.1.2.3", 5000), True),
        (("::1", 5000, 0, 0), True),
        (("::ffff:127.0.0.1", 5000, 0, 0), True),
        (("10.0.0.5", 5000), False),
        (("192.168.1.2", 5000), False),
        (("2001:db8::1", 5000, 0, 0), False),
        (None, False),  # a Unix socket or a closed transport
    ],
)
async def test_without_tokens_only_loopback_peers_may_write(
    storage_root: Path, peer: tuple[str, int] | None, allowed: bool
) -> None:
    policy = AccessPolicy(TokenStore(storage_root), private=False)
    await policy.load()
    for method in ("PUT", "DELETE", "POST"):
        answer = await policy.check(mocked_request(method, "/files/x.txt", peer))
        if allowed:
            assert answer is None
        else:
            assert answer is not None and answer.status == 403
            assert "artifactd token add" in json.loads(answer.text or "")["error"]
    read = await policy.check(mocked_request("GET", "/files/x.txt", ("10.0.0.5", 1)))
    assert read is None  # reads stay public


async def test_with_tokens_loopback_gets_no_special_treatment(
    make_client: MakeClient, tokens: dict[str, str]
) -> None:
    client = await make_client()
    assert (await client.put("/files/x.txt", data=b"x")).status == 401


async def test_without_tokens_private_reads_are_local_only(storage_root: Path) -> None:
    policy = AccessPolicy(TokenStore(storage_root), private=True)
    await policy.load()
    remote = await policy.check(mocked_request("GET", "/files/x", ("10.0.0.5", 1)))
    assert remote is not None and remote.status == 403
    assert await policy.check(mocked_request("GET", "/files/x", ("127.0.0.1", 1))) is None


# -- constant time, reloads, corrupt files --------------------------------------------------


async def test_tokens_are_compared_in_constant_time(
    make_client: MakeClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch, auth: Auth
) -> None:
    client = await make_client()
    calls: list[object] = []
    real_compare = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module artifactd.tokens calls
    assert (await client.put("/files/x", data=b"x", headers=auth(tokens["write"]))).status == 201
    assert (await client.put("/files/x", data=b"x", headers=auth("adt_nope"))).status == 401
    assert len(calls) == 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def client_with_policy(
    aiohttp_client: ClientFactory, storage_root: Path, clock: FakeClock
) -> Client:
    """A bare app (errors, then auth with a fake clock) whose uploads just answer 201."""
    app = web.Application(middlewares=[errors_middleware])
    policy = app[ACCESS_POLICY] = AccessPolicy(TokenStore(storage_root), private=False, clock=clock)
    app.middlewares.append(policy.middleware())
    app.on_startup.append(policy.load)

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=201)

    app.router.add_put("/files/{tail:.*}", accept)
    return await aiohttp_client(app)


async def test_tokens_added_or_removed_by_the_cli_apply_within_a_second(
    aiohttp_client: ClientFactory, storage_root: Path, auth: Auth
) -> None:
    cli = TokenStore(storage_root)
    await asyncio.to_thread(cli.add, "first", "write")
    clock = FakeClock()
    client = await client_with_policy(aiohttp_client, storage_root, clock)
    assert (await client.put("/files/x", data=b"x")).status == 401

    new = await asyncio.to_thread(cli.add, "second", "write")
    clock.now += 0.5  # the file is looked at no more than once a second
    assert (await client.put("/files/x", data=b"x", headers=auth(new))).status == 401
    clock.now += 0.5
    assert (await client.put("/files/x", data=b"x", headers=auth(new))).status == 201

    await asyncio.to_thread(cli.remove, "second")
    clock.now += 1.0
    assert (await client.put("/files/x", data=b"x", headers=auth(new))).status == 401


async def test_a_corrupted_file_while_serving_keeps_the_tokens_in_force(
    aiohttp_client: ClientFactory,
    storage_root: Path,
    tokens: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    auth: Auth,
) -> None:
    clock = FakeClock()
    client = await client_with_policy(aiohttp_client, storage_root, clock)
    path = storage_root / ".artifactd" / "tokens.json"
    await asyncio.to_thread(path.write_text, "{ broken")
    clock.now += 1.0
    response = await client.put("/files/x", data=b"x", headers=auth(tokens["write"]))
    assert response.status == 201
    assert (await client.put("/files/y", data=b"x")).status == 401
    assert "is corrupt" in caplog.text


async def test_a_corrupt_tokens_file_stops_startup(storage_root: Path) -> None:
    path = storage_root / ".artifactd" / "tokens.json"
    await asyncio.to_thread(path.parent.mkdir, exist_ok=True)
    await asyncio.to_thread(path.write_text, "[]")
    app = web.Application()
    policy = install_security(app, TokenStore(storage_root), private=False)
    assert policy is app[ACCESS_POLICY]
    with pytest.raises(TokenFileError):
        await policy.load(app)


# -- Expect: 100-continue -------------------------------------------------------------------


async def guarded_expect_handler(request: web.Request) -> web.StreamResponse | None:
    """What the upload routes' expect handler is to do first (see docs/security-tokens.md)."""
    refused = await check_upload_allowed(request)
    if refused is not None:
        return refused
    return await expect.files_expect_handler(request)


async def raw_put_with_expect(client: Client, headers: str) -> bytes:
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"PUT /files/exp.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Expect: 100-continue\r\n" + headers.encode() + b"\r\n"
    )
    await writer.drain()
    first = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    await writer.wait_closed()
    return first


async def test_expect_100_continue_is_refused_before_the_body_without_a_token(
    aiohttp_client: ClientFactory, storage_root: Path, tokens: dict[str, str], auth: Auth
) -> None:
    app = web.Application(middlewares=[errors_middleware])
    install_security(app, TokenStore(storage_root), private=False)

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=201)

    app.router.add_put("/files/{tail:.*}", accept, expect_handler=guarded_expect_handler)
    app[SETTINGS] = Settings(root=storage_root)
    app[STORE] = MemoryStore()  # the expect handler looks for the version a PUT replaces
    client = await aiohttp_client(app)
    assert await raw_put_with_expect(client, "") == b"HTTP/1.1 401 Unauthorized\r\n"
    read_only = "".join(f"{k}: {v}\r\n" for k, v in auth(tokens["read"]).items())
    assert await raw_put_with_expect(client, read_only) == b"HTTP/1.1 403 Forbidden\r\n"
    writer = "".join(f"{k}: {v}\r\n" for k, v in auth(tokens["write"]).items())
    assert await raw_put_with_expect(client, writer) == b"HTTP/1.1 100 Continue\r\n"


async def test_check_upload_allowed_without_install_fails_closed() -> None:
    response = await check_upload_allowed(mocked_request("PUT", "/files/x", ("127.0.0.1", 1)))
    assert response is not None and response.status == 500


# -- rate limiting ------------------------------------------------------------------------


async def test_over_the_rate_limit_is_429_with_retry_after(make_client: MakeClient) -> None:
    client = await make_client(rate_limit="2/min")
    assert (await client.get("/files/public.txt")).status == 200
    assert (await client.get("/files/public.txt")).status == 200
    limited = await client.get("/files/public.txt")
    assert limited.status == 429
    assert limited.headers["Retry-After"] == "30"
    assert (await error_of(limited))["error"] == "too many requests"


async def test_rate_limit_applies_before_authentication(
    make_client: MakeClient, tokens: dict[str, str], auth: Auth
) -> None:
    client = await make_client(rate_limit="1/min")
    assert (await client.put("/files/x", data=b"x", headers=auth("adt_guess1"))).status == 401
    assert (await client.put("/files/x", data=b"x", headers=auth("adt_guess2"))).status == 429


async def test_healthz_and_metrics_are_not_rate_limited(make_client: MakeClient) -> None:
    client = await make_client(rate_limit="1/min")
    for _ in range(5):
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/metrics")).status == 200
    assert (await client.get("/files/public.txt")).status == 200


async def test_forwarded_for_is_ignored_from_untrusted_peers(make_client: MakeClient) -> None:
    client = await make_client(rate_limit="1/min")
    first = await client.get("/files/public.txt", headers={"X-Forwarded-For": "198.51.100.1"})
    assert first.status == 200
    second = await client.get("/files/public.txt", headers={"X-Forwarded-For": "198.51.100.2"})
    assert second.status == 429  # same peer, same bucket, whatever the header says


async def test_forwarded_for_names_the_client_behind_a_trusted_proxy(
    make_client: MakeClient,
) -> None:
    client = await make_client(rate_limit="1/min", trusted=("127.0.0.0/8",))

    async def fetch(xff: str) -> int:
        response = await client.get("/files/public.txt", headers={"X-Forwarded-For": xff})
        return response.status

    assert await fetch("198.51.100.1") == 200
    assert await fetch("198.51.100.2") == 200
    assert await fetch("198.51.100.1") == 429
    # A forged left part does not buy a new bucket: the right-most untrusted address counts.
    assert await fetch("203.0.113.77, 198.51.100.2") == 429


# -- the serve warning --------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_no_warning_on_loopback_hosts(storage_root: Path, host: str) -> None:
    assert warn_if_writes_refused(host, TokenStore(storage_root)) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "build-cache.example"])
def test_loud_warning_on_other_hosts_without_tokens(storage_root: Path, host: str) -> None:
    warning = warn_if_writes_refused(host, TokenStore(storage_root))
    assert warning is not None
    assert warning.startswith("WARNING")
    assert host in warning and "artifactd token add" in warning
    assert "downloads" in (
        warn_if_writes_refused(host, TokenStore(storage_root), private=True) or ""
    )


def test_no_warning_once_a_token_exists(storage_root: Path) -> None:
    store = TokenStore(storage_root)
    store.add("ci", "write")
    assert warn_if_writes_refused("0.0.0.0", store) is None


@pytest.mark.parametrize(
    ("private", "rate_limited", "unchecked"),
    [(False, False, True), (True, False, False), (False, True, False), (True, True, False)],
)
def test_reads_pass_unchecked_only_when_public_and_not_rate_limited(
    storage_root: Path, private: bool, rate_limited: bool, unchecked: bool
) -> None:
    # What decides whether the hot path may answer in front of the middlewares.
    limiter = RateLimiter(*parse_rate("600/min")) if rate_limited else None
    policy = AccessPolicy(TokenStore(storage_root), private=private, limiter=limiter)
    assert policy.passes_reads_unchecked() is unchecked


@pytest.mark.parametrize(
    ("changes", "unchecked"),
    [({}, True), ({"private": True}, False), ({"rate_limit": "600/min"}, False)],
)
def test_the_installed_policy_knows_whether_reads_are_checked(
    storage_root: Path, changes: dict[str, Any], unchecked: bool
) -> None:
    app = create_app(Settings(root=storage_root, **changes), MemoryStore())
    assert app[ACCESS_POLICY].passes_reads_unchecked() is unchecked
