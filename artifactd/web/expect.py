"""`Expect: 100-continue` (RFC 9110 §10.1.1): the final refusal (401, 403, 409, 412, 413,
429, 507) instead of `100 Continue` when the request will be refused, before its body is
sent; aiohttp's default handler would always say 100."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import HttpVersion11, hdrs, web

from artifactd.errors import ArtifactdError
from artifactd.store.kinds import check_creatable
from artifactd.web.errors import ExpectHandler, error_for_domain, json_error
from artifactd.web.keys import SETTINGS, STORE
from artifactd.web.metrics import count_unhandled
from artifactd.web.middlewares import framing_error
from artifactd.web.security import check_upload_allowed
from artifactd.web.uploads import check_declared_length, form_target, put_target


def expect_handler_checking(check: Callable[[web.Request], Awaitable[object]]) -> ExpectHandler:
    """An `Expect: 100-continue` handler that refuses a request before its body is sent.

    aiohttp runs it before the middlewares, so failures are answered here directly, starting
    with the access policy's decision (429, 401, 403), then `check`: the checks the route's
    handler makes before reading the body (400, 409, 412, 413), with the same functions.
    """

    async def refusal(request: web.Request) -> web.StreamResponse | None:
        refused = framing_error(request) or await check_upload_allowed(request)
        if refused is not None:
            return refused
        try:
            await check(request)
        except ArtifactdError as exc:
            return error_for_domain(exc)
        if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
            return json_error(417, "expectation failed")
        return None

    async def expect_handler(request: web.Request) -> web.StreamResponse | None:
        refused = await refusal(request)
        if refused is not None:
            # Answered without the middlewares, so without the metrics one: counted here.
            count_unhandled(request, refused)
            return refused
        if request.version >= HttpVersion11:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the interim response is not part of the body count
        return None

    return expect_handler


async def _files_write_target(request: web.Request) -> None:
    if request.method != hdrs.METH_PUT:
        await form_target(request)
        return
    target = await put_target(request)
    # A PUT onto a directory, or below a file, is 409 (SPEC "Build caches": sent instead of
    # `100 Continue`). Without `Expect` the commit alone judges it: no look before the body.
    await check_creatable(request.config_dict[STORE], target.path)


async def _declared_length(request: web.Request) -> None:
    check_declared_length(request, request.config_dict[SETTINGS])


# PUT and form POST under /files/; the build caches' PUTs and WebDAV's methods, which check
# their own targets once admitted.
files_expect_handler = expect_handler_checking(_files_write_target)
declared_length_expect_handler = expect_handler_checking(_declared_length)
