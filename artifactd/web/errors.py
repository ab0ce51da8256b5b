"""The one table mapping domain errors to HTTP statuses, and the JSON error body."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from aiohttp import web

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


def json_error(status: int, reason: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """`{"error": reason, "status": status}` with the given status."""
    body = json.dumps({"error": reason, "status": status})
    response = web.Response(status=status, text=body, content_type="application/json")
    if headers:
        for name in _KEPT_HEADERS:
            if name in headers:
                response.headers[name] = headers[name]
    return response


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
