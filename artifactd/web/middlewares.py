"""Errors as JSON and message framing: every Application answer leaves through here.

The request's start (id, clock) and the headers of every response are `pipeline`'s.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from artifactd.durations import parse_decimal
from artifactd.errors import ArtifactdError, InvalidValueError
from artifactd.web.errors import error_for_domain, in_app_shape, json_error
from artifactd.web.keys import STARTED_RESPONSE, UNREADABLE_TARGET
from artifactd.web.pipeline import begin_request, request_id_for

log = logging.getLogger("artifactd.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# aiohttp's C parser (llhttp) refuses a Content-Length above 2**64 - 1 with 400; its
# pure-Python parser accepts any digit string. Refusing the same here keeps the answer
# identical with both parsers.
MAX_CONTENT_LENGTH = 2**64 - 1

# nginx's status for a request whose client left before the answer (only ever logged).
CLIENT_CLOSED_REQUEST = 499


def framing_error(request: web.BaseRequest) -> web.Response | None:
    """Message framing both aiohttp parsers let through but artifactd will not act on.

    Both parsers already refuse (400) Content-Length with Transfer-Encoding, duplicate or
    non-numeric lengths, and a Transfer-Encoding not ending in `chunked`. Left are: a
    length no 64-bit counter holds (the C parser's 400, given by the Python one too), and
    a transfer coding before `chunked` (`gzip, chunked`): both parsers would silently
    drop it and store the still-encoded bytes, so RFC 9112 §6.1's 501 instead. And a
    target only the pure-Python parser passes (see `pipeline.guard_request_factory`).
    """
    if UNREADABLE_TARGET in request:
        return closing_error(400, "invalid request target")
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
    """Turn every failure into `{"error", "status"}` (or the error shape of the route's
    sub-application, `in_app_shape`); never leak a traceback."""
    return in_app_shape(request, await _errors_as_json(request, handler))


async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
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
            return error_for_domain(exc, request)
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
