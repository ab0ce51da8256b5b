"""Who may do what: token authorisation (Bearer, or Basic with the token as the password)
and per-client rate limiting, as middlewares.

Install with `install_security(app, ...)` while errors_middleware is the innermost middleware:
requests then pass metrics → errors → access (rate limit, then auth) → handler. The upload
routes' Expect handler runs before any middleware, so it asks the same decision itself
(`check_upload_allowed`); a request is admitted once, and counted once by the rate limit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware
from multidict import MultiMapping

from artifactd.errors import InvalidPathError, InvalidValueError, NotFoundError
from artifactd.paths import parse_artifact_path
from artifactd.ratelimit import (
    IPNetwork,
    RateLimiter,
    client_address,
    forwarded_chain,
    is_loopback,
    is_trusted,
    parse_address,
)
from artifactd.tokens import Scope, TokenFileError, TokenInfo, TokenStore
from artifactd.web import buildcache
from artifactd.web.dav.headers import destination_path
from artifactd.web.errors import json_error
from artifactd.web.files import FILES_PREFIX, requested_path
from artifactd.web.middlewares import Handler

log = logging.getLogger("artifactd.security")

# Operations endpoints: never behind a token, never rate limited (monitoring must work).
EXEMPT_PATHS = frozenset({"/healthz", "/metrics"})
# Every other method writes (or is unknown, so it is refused before being routed): PUT,
# POST, DELETE and WebDAV's MKCOL, COPY and MOVE. PROPFIND reads (RFC 4918 §9.1).
READ_METHODS = frozenset({hdrs.METH_GET, hdrs.METH_HEAD, hdrs.METH_OPTIONS, "PROPFIND"})
# Upload resources (web/tus.py): every request but OPTIONS writes, and HEAD must know the
# token too, as a resource belongs to the token that created it.
UPLOADS_PREFIX = "/uploads/"
# Methods that also write at their Destination header's path (RFC 4918 §9.8, §9.9); MOVE
# removes its source too, COPY only reads it.
DESTINATION_METHODS = frozenset({"COPY", "MOVE"})
RELOAD_INTERVAL_SECONDS = 1.0
REALM = 'Bearer realm="artifactd"'
# RFC 7617 §2: sent besides the Bearer challenge to a client that tried Basic.
BASIC_REALM = 'Basic realm="artifactd", charset="UTF-8"'
# Headers a proxy adds: their presence means the TCP peer is not the real client.
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")
NO_TOKENS_HINT = (
    "no tokens are configured, so only clients on the server's own host may do this; "
    "create one with `artifactd token add NAME --scope write`"
)

_API_ARTIFACTS = "/api/v1/artifacts"
# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_BEARER = re.compile(r"Bearer +([A-Za-z0-9._~+/-]+=*) *", re.IGNORECASE)
# RFC 7617 §2: "Basic" 1*SP token68, the base64 of `user-id ":" password`.
_BASIC = re.compile(r"Basic +([A-Za-z0-9+/]+=*) *", re.IGNORECASE)
_SCHEME = re.compile(r"(Bearer|Basic)", re.IGNORECASE)

TOKEN_INFO = web.RequestKey("token_info", TokenInfo)  # the authenticated token, if any
# Set once the request passed the rate limit and authorisation (by the Expect handler or the
# middleware, whichever asked first): the other one does not count or check it again.
ADMITTED = web.RequestKey("admitted", bool)


def required_scope(method: str, path: str, *, private: bool) -> Scope | None:
    """The scope a request needs; None when anyone may make it."""
    if path in EXEMPT_PATHS:
        return None
    if path.startswith(UPLOADS_PREFIX) and method != hdrs.METH_OPTIONS:
        return "write"
    if method not in READ_METHODS and not buildcache.is_read_only_post(method, path):
        return "write"
    return "read" if private else None


class Credentials(NamedTuple):
    """The token a request presents and the scheme it came in."""

    token: str  # "" (never valid) when the header was malformed
    scheme: Literal["Bearer", "Basic"]


def presented_credentials(authorization: str | None) -> Credentials | None:
    """The token of `Authorization: Bearer <token>` or of HTTP Basic with the token as the
    password (RFC 7617; the user name, possibly empty, is ignored). None without either
    (another scheme is no credential of ours, RFC 6750 §3); an empty token (never valid)
    when the header names one of the two schemes but is malformed: bad base64, not UTF-8,
    no colon."""
    if authorization is None:
        return None
    scheme = _SCHEME.match(authorization.lstrip())
    if scheme is None:
        return None
    if scheme[1].lower() == "bearer":
        match = _BEARER.fullmatch(authorization)
        return Credentials(match[1] if match else "", "Bearer")
    match = _BASIC.fullmatch(authorization)
    if match is None:
        return Credentials("", "Basic")
    try:
        decoded = base64.b64decode(match[1], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return Credentials("", "Basic")
    _user, colon, password = decoded.partition(":")
    return Credentials(password if colon else "", "Basic")


def peer_host(request: web.BaseRequest) -> str | None:
    """The TCP peer's address, never a header (which the client writes)."""
    transport = request.transport
    peername = None if transport is None else transport.get_extra_info("peername")
    if isinstance(peername, tuple | list) and peername:
        return str(peername[0])
    return None


def forwarded_for(headers: MultiMapping[str]) -> str | None:
    """Every X-Forwarded-For header of the request, joined as one list."""
    return ", ".join(headers.getall("X-Forwarded-For", [])) or None


def is_local_client(
    peer: str | None,
    headers: MultiMapping[str],
    trusted: Sequence[IPNetwork],
) -> bool:
    """Whether the client is on this host: a loopback peer that relays nobody else.

    A proxy on this host (nginx on 127.0.0.1) would make every remote client look local,
    so a loopback peer sending proxy headers counts as local only if it is a trusted proxy
    and the client it names is loopback too.
    """
    if not is_loopback(peer):
        return False
    if not any(name in headers for name in PROXY_HEADERS):
        return True
    peer_address = parse_address(peer or "")
    xff = forwarded_for(headers)
    if peer_address is None or not is_trusted(peer_address, trusted):
        return False
    if forwarded_chain(xff) is None:
        return False
    return is_loopback(client_address(peer, xff, trusted))


def unauthorized(
    reason: str, *, invalid_token: bool, scheme: Literal["Bearer", "Basic"] = "Bearer"
) -> web.Response:
    """401 with the RFC 6750 §3 challenge; `error="invalid_token"` when one was presented;
    a Basic challenge too (RFC 7617 §2) for a client that sent Basic."""
    challenge = REALM + (', error="invalid_token"' if invalid_token else "")
    response = json_error(401, reason, {"WWW-Authenticate": challenge})
    if scheme == "Basic":
        response.headers.add("WWW-Authenticate", BASIC_REALM)
    return response


def insufficient_scope(info: TokenInfo, needed: Scope) -> web.Response:
    challenge = f'{REALM}, error="insufficient_scope", scope="{needed}"'
    reason = f"token {info.name!r} has scope {info.scope}; this needs {needed}"
    return json_error(403, reason, {"WWW-Authenticate": challenge})


def within_prefix(request: web.Request, info: TokenInfo, *, private: bool) -> bool | None:
    """Whether the request stays under the token's prefix; None if its path is malformed
    (the handler answers that with 400/404/502: nothing is read or written). A COPY or
    MOVE writes at its Destination, which must be under the prefix too; a COPY's source is
    only read, so it must be under the prefix only where reads need a token."""
    if info.prefix is None:
        return True
    raw = request.rel_url.raw_path
    if raw.startswith(UPLOADS_PREFIX):
        return True  # the target path is in the resource: web/tus.py checks it
    try:
        if raw.startswith(FILES_PREFIX):
            path, _ = requested_path(request)
            if request.method in ("PUT", "DELETE", "MOVE") and path == info.prefix:
                return False  # the prefix is a directory, not a file to replace
            if request.method in DESTINATION_METHODS:
                target = destination_path(request)
                if target == info.prefix or not info.covers(target):
                    return False
                if request.method == "COPY" and not private:
                    return True
            return info.covers(path)
        if raw.startswith(_API_ARTIFACTS + "/"):
            return info.covers(parse_artifact_path(raw[len(_API_ARTIFACTS) + 1 :]))
    except (InvalidPathError, InvalidValueError, NotFoundError, web.HTTPException):
        return None
    try:
        touched = buildcache.touched_path(request.path, request.query)
    except InvalidPathError:
        return None
    if touched is not None:
        return info.covers(touched)
    if raw == _API_ARTIFACTS:
        # The store lists by string prefix: require the slash, or `myproj` lists `myproj2/`.
        return request.query.get("prefix", "").startswith(info.prefix + "/")
    return False  # listings of everything, events, stats: only for unlimited tokens


class AccessPolicy:
    """Who may make a request: the rate limit, then authorisation. One decision, shared by
    the middleware and the upload Expect handler."""

    def __init__(
        self,
        token_store: TokenStore,
        *,
        private: bool,
        limiter: RateLimiter | None = None,
        trusted_proxies: Sequence[IPNetwork] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = token_store
        self.private = private
        self.limiter = limiter
        self.trusted_proxies = list(trusted_proxies)
        self._clock = clock
        self._next_reload_at = float("-inf")
        self._reloading: asyncio.Future[None] | None = None

    def passes_reads_unchecked(self) -> bool:
        """Whether a GET of `/files/...` passes the rate-limit and auth middlewares without
        any check: it needs no token (`required_scope`) and no client is counted. Only then
        may something in front of them (the hot path) answer it."""
        needed = required_scope(hdrs.METH_GET, FILES_PREFIX, private=self.private)
        return needed is None and self.limiter is None

    async def load(self, app: web.Application | None = None) -> None:
        """on_startup: read the tokens file; a corrupt one stops the server from starting."""
        await asyncio.to_thread(self.tokens.load)

    async def admit(self, request: web.Request) -> web.Response | None:
        """None if the request may proceed, else the 429 (rate limit, checked first: it also
        guards token guessing) or 401/403/503 answer. Decided once per request."""
        if request.get(ADMITTED):
            return None
        refused = self.rate_limit(request) or await self.check(request)
        if refused is None:
            request[ADMITTED] = True
        return refused

    def rate_limit(self, request: web.BaseRequest) -> web.Response | None:
        """429 with Retry-After beyond the limiter's rate, per client address."""
        if self.limiter is None or request.path in EXEMPT_PATHS:
            return None
        client = client_address(
            peer_host(request), forwarded_for(request.headers), self.trusted_proxies
        )
        wait_seconds = self.limiter.check(client, self._clock())
        if wait_seconds is None:
            return None
        return json_error(429, "too many requests", {"Retry-After": str(int(wait_seconds))})

    async def check(self, request: web.Request) -> web.Response | None:
        """Authorisation alone: None if the request may proceed, else the 401/403/503."""
        needed = required_scope(request.method, request.path, private=self.private)
        if needed is None:
            return None
        return await self.check_scope(request, needed)

    async def check_scope(self, request: web.Request, needed: Scope) -> web.Response | None:
        """`check` for a request known to need the scope `needed`."""
        await self._refresh()
        if not self.tokens.loaded:
            return json_error(503, "token store unavailable")
        credentials = presented_credentials(request.headers.get(hdrs.AUTHORIZATION))
        if credentials is None:
            if self.tokens.has_tokens():
                return unauthorized("authentication required", invalid_token=False)
            if is_local_client(peer_host(request), request.headers, self.trusted_proxies):
                return None
            return json_error(403, NO_TOKENS_HINT)
        info = self.tokens.authenticate(credentials.token)
        if info is None:
            return unauthorized("invalid token", invalid_token=True, scheme=credentials.scheme)
        if not info.allows(needed):
            return insufficient_scope(info, needed)
        if within_prefix(request, info, private=self.private) is False:
            return json_error(403, f"token {info.name!r} is limited to {info.prefix}/")
        request[TOKEN_INFO] = info
        return None

    async def _refresh(self) -> None:
        """Pick up `artifactd token add/rm` from other processes: a stat at most once a
        second, off the event loop; requests arriving meanwhile wait for that one check."""
        now = self._clock()
        if self._reloading is None and (not self.tokens.loaded or now >= self._next_reload_at):
            self._next_reload_at = now + RELOAD_INTERVAL_SECONDS
            self._reloading = asyncio.ensure_future(self._reload())
        if self._reloading is not None:
            await asyncio.shield(self._reloading)

    async def _reload(self) -> None:
        try:
            await asyncio.to_thread(self.tokens.reload_if_changed)
        except TokenFileError as exc:
            if self.tokens.loaded:
                log.error("%s; the tokens read before stay in force", exc)
            else:
                log.error("%s; requests that need a token are refused", exc)
        finally:
            self._reloading = None

    def middleware(self) -> Middleware:
        @web.middleware
        async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
            refused = await self.admit(request)
            if refused is not None:
                return refused
            return await handler(request)

        return access


ACCESS_POLICY = web.AppKey("access_policy", AccessPolicy)


def install_security(
    app: web.Application,
    token_store: TokenStore,
    *,
    private: bool,
    limiter: RateLimiter | None = None,
    trusted_proxies: Sequence[IPNetwork] = (),
) -> AccessPolicy:
    """Append the access middleware (so call it while errors_middleware is last in
    `app.middlewares`), keep the policy for `check_upload_allowed`, and load the tokens file
    first thing at startup."""
    policy = AccessPolicy(
        token_store, private=private, limiter=limiter, trusted_proxies=trusted_proxies
    )
    app[ACCESS_POLICY] = policy
    app.middlewares.append(policy.middleware())
    # First of all startup steps (before cleanup_ctx starts background tasks), so a corrupt
    # tokens file stops the server before anything needs cleaning up.
    app.on_startup.insert(0, policy.load)
    return policy


async def check_upload_allowed(request: web.Request) -> web.StreamResponse | None:
    """For an Expect handler (run before middlewares): the access middleware's answer (429,
    401, 403), so a client that may not write never gets `100 Continue`. None: go on, and
    the middleware will not count or check the request again."""
    policy = request.config_dict.get(ACCESS_POLICY)
    if policy is None:
        log.error("check_upload_allowed called without install_security; refusing")
        return json_error(500, "internal error")
    return await policy.admit(request)


def warn_if_writes_refused(
    host: str, token_store: TokenStore, *, private: bool = False
) -> str | None:
    """The warning for `serve` on a non-loopback host with no tokens (reads the tokens file:
    call it before the event loop runs, or in a thread)."""
    if host == "localhost" or is_loopback(host.strip("[]")) or token_store.has_tokens():
        return None
    refused = "uploads, deletes and downloads" if private else "uploads and deletes"
    return (
        f"WARNING: serving on {host} with no tokens configured: {refused} from any other "
        "host are refused with 403. Create a token with "
        "`artifactd token add NAME --scope write` and send it as `Authorization: Bearer ...` "
        "(or as the password of HTTP Basic)."
    )
