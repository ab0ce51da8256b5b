"""Request id, timing, and errors as JSON: every response leaves through here."""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from multidict import istr

from artifactd.durations import parse_decimal
from artifactd.errors import ArtifactdError, InvalidValueError
from artifactd.web.errors import error_for_domain, json_error
from artifactd.web.keys import REQUEST_ID, STARTED_AT, STARTED_RESPONSE

log = logging.getLogger("artifactd.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ResponseHook = Callable[[web.BaseRequest, web.StreamResponse], Awaitable[None]]

# An incoming X-Request-Id is echoed only when it is this tame (it lands in logs and headers).
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# aiohttp's C parser (llhttp) refuses a Content-Length above 2**64 - 1 with 400; its
# pure-Python parser accepts any digit string. Refusing the same here keeps the answer
# identical with both parsers.
MAX_CONTENT_LENGTH = 2**64 - 1

# Header names as `istr`: case-insensitive lookups and stores without folding the name.
X_REQUEST_ID = istr("X-Request-Id")
X_RESPONSE_TIME = istr("X-Response-Time")
X_CONTENT_TYPE_OPTIONS = istr("X-Content-Type-Options")

# nginx's status for a request whose client left before the answer (only ever logged).
CLIENT_CLOSED_REQUEST = 499


# Ids are a random per-process prefix and a counter: unique across processes and restarts
# with overwhelming probability, and far cheaper than a uuid4 per request.
_ID_PREFIX = secrets.token_hex(8)
_id_counter = itertools.count(1)


def _new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):08x}"


def request_id_for(request: web.BaseRequest) -> str:
    """The request's id: a valid incoming X-Request-Id, else a new one (assigned once)."""
    try:
        return request[REQUEST_ID]
    except KeyError:  # assigned first thing by errors_middleware, so rarely missing
        return assign_request_id(request)


def elapsed_ms(request: web.BaseRequest) -> float | None:
    """Milliseconds since the request reached the middlewares, on `time.perf_counter`
    (X-Response-Time and the access log); None for a request answered before them."""
    started: float | None = request.get(STARTED_AT)
    return None if started is None else (time.perf_counter() - started) * 1000


def begin_request(request: web.BaseRequest) -> None:
    """Start the request's clock and give it its id: the first step of every answer. Once:
    a request the hot path began and then handed to the Application keeps both."""
    if STARTED_AT not in request:
        begin_new_request(request)


def begin_new_request(request: web.BaseRequest) -> None:
    """`begin_request` for the first code to see a request (the hot path), which need not
    check whether it was begun: that check raises and catches a KeyError inside aiohttp."""
    request[STARTED_AT] = time.perf_counter()
    assign_request_id(request)


def assign_request_id(request: web.BaseRequest) -> str:
    incoming = request.headers.get(X_REQUEST_ID)
    if incoming is None or not _VALID_REQUEST_ID.fullmatch(incoming):
        incoming = _new_request_id()
    request[REQUEST_ID] = incoming
    return incoming


def framing_error(request: web.BaseRequest) -> web.Response | None:
    """Message framing both aiohttp parsers let through but artifactd will not act on.

    Both parsers already refuse (400) Content-Length with Transfer-Encoding, duplicate or
    non-numeric lengths, and a Transfer-Encoding not ending in `chunked`. Left are: a
    length no 64-bit counter holds (the C parser's 400, given by the Python one too), and
    a transfer coding before `chunked` (`gzip, chunked`): both parsers would silently
    drop it and store the still-encoded bytes, so RFC 9112 §6.1's 501 instead.
    """
    coding = request.headers.get(hdrs.TRANSFER_ENCODING)
    if coding is not None:
        codings = [c.strip(" \t").lower() for c in coding.split(",")]
        if codings != ["chunked"]:
            return closing_error(501, "unsupported transfer coding")
    length = request.headers.get(hdrs.CONTENT_LENGTH)
    if length is not None:
        try:
            parse_decimal(length, name="Content-Length", maximum=MAX_CONTENT_LENGTH)
        except InvalidValueError:
            return closing_error(400, "invalid content-length")
    return None


def closing_error(status: int, reason: str) -> web.Response:
    """An error after which the connection is closed: where the request's body ends (and
    so where a next request would start) is not known."""
    response = json_error(status, reason)
    response.force_close()
    return response


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into `{"error", "status"}`; never leak a traceback."""
    begin_request(request)
    refused = framing_error(request)
    if refused is not None:
        return refused
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and 304s are answers, not errors
        return json_error(exc.status, exc.reason.lower(), exc.headers)
    except web.RequestPayloadError:
        # The body broke its own framing or coding (a bad chunk, an undecodable
        # Content-Encoding): the client's fault, not the server's.
        return closing_error(400, "malformed request body")
    except (ConnectionResetError, BrokenPipeError) as exc:
        answer = answer_for_departed_client(request)
        if answer is None:
            raise
        # The request's body stream keeps the exception, and its traceback the frames that
        # hold the request: without this the connection (and an upload's buffered bytes)
        # would live in a reference cycle until the next full garbage collection.
        exc.__traceback__ = None
        return answer
    except Exception as exc:
        if STARTED_RESPONSE in request:
            # Headers are out: no error answer is possible. Re-raising makes aiohttp close
            # the connection, so the client sees a short body rather than a wrong one.
            log.exception("error after the response started, request %s", request_id_for(request))
            raise
        if isinstance(exc, ArtifactdError):
            return error_for_domain(exc)
        log.exception("unhandled error in request %s", request_id_for(request))
        return json_error(500, "internal error")


def answer_for_departed_client(request: web.Request) -> web.StreamResponse | None:
    """What to hand aiohttp when the connection broke under a request, or None if the
    client is still there (then it was not the client's doing).

    A client leaving is routine (an aborted download, a cancelled CI job's upload): no
    warning, no traceback. Mid-body it is the started response, so the access log shows
    its status and the bytes that went out; before any answer it is a 499, as nginx logs
    it, which nobody receives. aiohttp closes the connection either way."""
    started_ref: weakref.ref[web.StreamResponse] | None = request.get(STARTED_RESPONSE)
    started = started_ref() if started_ref is not None else None
    if started is not None:
        started.force_close()
        return started
    transport = request.transport
    if transport is not None and not transport.is_closing():
        return None
    return closing_error(CLIENT_CLOSED_REQUEST, "client closed the connection")


def common_headers_hook(*, close_after_response: bool) -> ResponseHook:
    """The on_response_prepare step setting the headers every response carries.

    `close_after_response` (keep-alive disabled) says so in a `Connection: close` header and
    closes the connection once the answer is sent."""

    async def add_common_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
        request[STARTED_RESPONSE] = weakref.ref(response)  # for errors_middleware
        add_headers_of_every_response(request, response, close_after_response)

    return add_common_headers


def add_headers_of_every_response(
    request: web.BaseRequest, response: web.StreamResponse, close_after_response: bool
) -> None:
    """Request id, response time and nosniff (and `Connection: close` when keep-alive is
    off): set as the response is prepared, or by the hot path as it answers."""
    headers = response.headers
    headers[X_REQUEST_ID] = request_id_for(request)
    elapsed = elapsed_ms(request)
    if elapsed is not None:  # None: answered before the middlewares (an Expect refusal)
        headers[X_RESPONSE_TIME] = f"{elapsed:.3f}ms"
    headers[X_CONTENT_TYPE_OPTIONS] = "nosniff"
    if close_after_response:
        response.force_close()
        headers[hdrs.CONNECTION] = "close"
