"""Request id, timing, and errors as JSON: every response leaves through here."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from artifactd.errors import ArtifactdError
from artifactd.web.errors import error_for_domain, json_error
from artifactd.web.keys import REQUEST_ID, STARTED_AT

log = logging.getLogger("artifactd.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# An incoming X-Request-Id is echoed only when it is this tame (it lands in logs and headers).
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_for(request: web.BaseRequest) -> str:
    """The request's id: a valid incoming X-Request-Id, else a new one (assigned once)."""
    existing = request.get(REQUEST_ID)
    if existing is None:
        incoming = request.headers.get("X-Request-Id", "")
        existing = incoming if _VALID_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        request[REQUEST_ID] = existing
    return str(existing)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into `{"error", "status"}`; never leak a traceback."""
    request.setdefault(STARTED_AT, time.perf_counter())
    request_id_for(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and 304s are answers, not errors
        return json_error(exc.status, exc.reason.lower(), exc.headers)
    except ArtifactdError as exc:
        return error_for_domain(exc)
    except ConnectionResetError:
        raise  # the client left; there is nobody to answer
    except Exception:
        log.exception("unhandled error in request %s", request_id_for(request))
        return json_error(500, "internal error")


async def add_common_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """on_response_prepare: headers every response carries, set just before they are sent."""
    response.headers["X-Request-Id"] = request_id_for(request)
    started = request.get(STARTED_AT)
    if started is not None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        response.headers["X-Response-Time"] = f"{elapsed_ms:.3f}ms"
    response.headers["X-Content-Type-Options"] = "nosniff"
