"""The one table mapping domain errors to HTTP statuses, and the JSON error body."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import hdrs, web

from artifactd import errors

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


def error_for_domain(exc: errors.ArtifactdError) -> web.Response:
    status, reason = status_for(exc)
    detail = str(exc)
    # NotFound carries only the path, which the client already knows.
    if detail and status not in (404,):
        reason = f"{reason}: {detail}"
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return json_error(status, reason, headers)
