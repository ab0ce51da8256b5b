"""The one table mapping domain errors to HTTP statuses, and the JSON error body."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import hdrs, web

from artifactd import errors
from artifactd.web.pipeline import request_id_for

log = logging.getLogger("artifactd.web")

# Most specific first: the first matching class wins.
STATUS_FOR_ERROR: tuple[tuple[type[errors.ArtifactdError], int, str], ...] = (
    (errors.InvalidPathError, 400, "invalid path"),
    (errors.InvalidDigestError, 400, "invalid digest header"),
    (errors.DigestMismatchError, 400, "digest mismatch"),
    (errors.InvalidValueError, 400, "invalid value"),
    (errors.IncompleteUploadError, 400, "incomplete upload"),
    (errors.NotFoundError, 404, "not found"),
    (errors.NotDirectoryError, 404, "not found"),
    (errors.IsDirectoryError, 409, "path is a directory"),
    (errors.ConflictError, 409, "conflict"),
    (errors.PreconditionFailedError, 412, "precondition failed"),
    (errors.UploadTooLargeError, 413, "upload too large"),
    # RFC 6585 §4: 429 is "too many requests" from one user, not only in time, and it
    # clears when that client finishes or deletes an upload. 507 (RFC 4918 §11.5) would
    # say the server's storage is out, a condition of every client, and push-style
    # clients give up on it; tus itself names no status for a quota.
    (errors.TooManyUploadsError, 429, "too many open uploads"),
    (errors.StorageFullError, 507, "insufficient storage"),
    (errors.StoreUnavailableError, 503, "storage unavailable"),
)

# Headers an HTTPException may carry that must survive its conversion to a JSON error.
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After", "Content-Range", "Location")


def status_for(exc: errors.ArtifactdError) -> tuple[int, str]:
    for error_type, status, reason in STATUS_FOR_ERROR:
        if isinstance(exc, error_type):
            return status, reason
    return 500, "internal error"


# A sub-application speaking a client's protocol renders its errors in that protocol's
# shape (Turborepo's `{"error": {"code", "message"}}`, Nx's plain text): (status, reason)
# → (body, content type). `errors_middleware` applies it to every error answer of the
# routes under that sub-application, the auth and rate-limit refusals included.
ErrorRenderer = Callable[[int, str], tuple[bytes, str]]
ERROR_RENDERER: web.AppKey[ErrorRenderer] = web.AppKey("error_renderer")
# The reason of an answer made by json_error, kept so it can be rendered in another shape.
ERROR_REASON = web.ResponseKey("error_reason", str)


def json_error(status: int, reason: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """`{"error": reason, "status": status}` with the given status."""
    body = json.dumps({"error": reason, "status": status})
    response = web.Response(status=status, text=body, content_type="application/json")
    response[ERROR_REASON] = reason
    if headers:
        for name in _KEPT_HEADERS:
            if name in headers:
                response.headers[name] = headers[name]
    return response


def in_app_shape(request: web.BaseRequest, response: web.StreamResponse) -> web.StreamResponse:
    """A json_error answer in the error shape of the sub-application routing `request`,
    if it has one (ERROR_RENDERER); any other answer unchanged."""
    if not isinstance(response, web.Response) or ERROR_REASON not in response:
        return response
    match_info = getattr(request, "match_info", None)  # (None on a low-level request)
    if match_info is None or not match_info.apps:
        return response
    # The innermost application of the route (`current_app` is the one whose middleware
    # runs at the moment, the root app here).
    render = match_info.apps[-1].get(ERROR_RENDERER)
    if render is None:
        return response
    body, content_type = render(response.status, response[ERROR_REASON])
    response.body = body
    response.headers[hdrs.CONTENT_TYPE] = content_type
    return response


ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


def with_app_shape(expect_handler: ExpectHandler) -> ExpectHandler:
    """An Expect handler (which runs before any middleware) whose refusals take the error
    shape of the route's sub-application, as errors_middleware gives every other answer."""

    async def shaped(request: web.Request) -> web.StreamResponse | None:
        answer = await expect_handler(request)
        return None if answer is None else in_app_shape(request, answer)

    return shaped


# How long a client should wait before retrying a 503 (the store being unreachable).
RETRY_AFTER_SECONDS = 5


# Failures of the store itself: their details name backend endpoints, buckets, prefixes,
# upload ids and file system paths, so they go to the log with the request id and the
# client gets the reason alone. (507's details are fixed sentences, kept: "no space left
# on the storage device", "the storage root is on a read-only filesystem".)
PRIVATE_DETAIL_STATUSES = frozenset({500, 503})


def error_for_domain(
    exc: errors.ArtifactdError, request: web.BaseRequest | None = None
) -> web.Response:
    status, reason = status_for(exc)
    detail = str(exc)
    if status in PRIVATE_DETAIL_STATUSES:
        log_private_detail(request, reason, detail)
    elif detail and status != 404:  # NotFound carries only the path the client sent
        reason = f"{reason}: {detail}"
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return json_error(status, reason, headers)


def storage_unavailable(request: web.BaseRequest, detail: str) -> web.Response:
    """503 (with Retry-After) for a store that fails; `detail` only to the log."""
    log_private_detail(request, "storage unavailable", detail)
    return json_error(503, "storage unavailable", {"Retry-After": str(RETRY_AFTER_SECONDS)})


def log_private_detail(request: web.BaseRequest | None, reason: str, detail: str) -> None:
    rid = "-" if request is None else request_id_for(request)
    log.warning("%s in request %s: %s", reason, rid, detail or "(no detail)")
