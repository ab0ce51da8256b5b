"""The IETF "Resumable Uploads for HTTP" draft (draft-ietf-httpbis-resumable-upload),
interop versions 6 (-04/-05) and 8 (-09 to -11; section numbers below are -11's, "-05 §"
where version 6 differs), and the routes of `/uploads/` for it and for tus.

A `PUT /files/{path}` (or `POST /uploads/?path=...`) carrying `Upload-Complete` and a
supported `Upload-Draft-Interop-Version` creates an upload resource (§4.2): after its checks
and its authorisation the server sends `104 Upload Resumption Supported` with the
resource's `Location`, then reads the body into it. A body received whole and marked
complete commits the artifact, and the answer is the PUT's (201/200, ETag, JSON); a
dropped connection keeps the bytes received, and the client asks `HEAD /uploads/{id}` for
the offset (§4.3) and `PATCH`es the rest (§4.4). The upload resource model, ownership, the
locked append and the commit are tus's too (web/resumable.py): the draft adds explicit
completion (`Upload-Complete: ?1`), a record of a completed upload until it expires, and
RFC 9457 problem details.

Requests carrying `Tus-Resumable` go to tus (web/tus.py); a PUT with an interop version
this server does not speak is a plain PUT, with no 104 (Appendix "Draft Version
Identification").
"""

from __future__ import annotations

import json
import time

from aiohttp import HttpVersion11, hdrs, web

from artifactd.errors import (
    ArtifactdError,
    InvalidValueError,
    NotFoundError,
    StorageFullError,
    StoreUnavailableError,
    UploadTooLargeError,
)
from artifactd.http import resumable as fields
from artifactd.paths import is_internal, parse_artifact_path
from artifactd.resumable.base import Appending, UploadResource, UploadResources
from artifactd.web import resumable, tus, uploads
from artifactd.web.errors import error_for_domain, json_error
from artifactd.web.expect import declared_length_expect_handler
from artifactd.web.keys import SETTINGS
from artifactd.web.middlewares import Handler

PROTOCOL = "ietf"  # UploadResource.protocol of the resources created here
UPLOADS_PREFIX = tus.UPLOADS_PREFIX
INTEROP_HEADER = "Upload-Draft-Interop-Version"
# -05 §5 and §7: HEAD and DELETE requests must not carry these (400).
_V6_FORBIDDEN_ON_HEAD = ("Upload-Offset", "Upload-Complete", "Upload-Length")
_V6_FORBIDDEN_ON_DELETE = ("Upload-Offset", "Upload-Complete")


class _Problem(Exception):
    """An RFC 9457 answer (§7): the problem type, its title and its status."""

    def __init__(self, type_uri: str, title: str, status: int, **members: int) -> None:
        super().__init__(title)
        self.document = fields.problem(type_uri, title, status, **members)
        self.status = status


def draft_version(request: web.BaseRequest) -> int | None:
    """The interop version a request speaks, if this server speaks it too (tus requests,
    with `Tus-Resumable`, never speak the draft)."""
    if "Tus-Resumable" in request.headers:
        return None
    return fields.interop_version(request.headers.get(INTEROP_HEADER))


def creation_version(request: web.BaseRequest) -> int | None:
    """The interop version of a request that asks to create an upload resource (§4.2:
    `Upload-Complete` a Boolean), or None for a plain request."""
    if fields.parse_boolean(request.headers.get("Upload-Complete")) is None:
        return None
    return draft_version(request)


def _unspoken_version(request: web.BaseRequest) -> web.Response | None:
    """400 for a request on an upload resource naming an interop version this server does
    not speak (it would otherwise be answered as tus, whose 412 says nothing useful)."""
    if "Tus-Resumable" in request.headers or INTEROP_HEADER not in request.headers:
        return None
    if draft_version(request) is not None:
        return None
    spoken = " and ".join(str(v) for v in fields.INTEROP_VERSIONS)
    return json_error(400, f"unsupported {INTEROP_HEADER}: this server speaks {spoken}")


def _limit(version: int, request: web.Request, resource: UploadResource | None) -> str:
    settings = request.config_dict[SETTINGS]
    if resource is None:
        lifetime = int(settings.upload_expiry)
    else:
        lifetime = int(resource.expires_at - time.time())
    return fields.upload_limit(version, max_size=settings.max_upload_size, lifetime=lifetime)


def _state_headers(version: int, request: web.Request, resource: UploadResource) -> dict[str, str]:
    """What every answer about an upload resource says: its offset and completeness
    (§4.1.1, §4.1.2), its length once known (§4.1.3), its limits (§4.1.4), the version."""
    headers = {
        "Upload-Offset": str(resource.offset),
        "Upload-Complete": fields.serialize_boolean(resource.complete),
        "Upload-Limit": _limit(version, request, resource),
        INTEROP_HEADER: str(version),
    }
    if resource.length is not None:
        headers["Upload-Length"] = str(resource.length)
    return headers


def _problem_response(version: int, problem: _Problem, headers: dict[str, str]) -> web.Response:
    # RFC 9457 §3: application/problem+json, JSON is UTF-8 by definition (no charset).
    body = json.dumps(problem.document).encode()
    response = web.Response(body=body, status=problem.status, content_type=fields.PROBLEM_JSON)
    response.headers.update(headers)
    response.headers[INTEROP_HEADER] = str(version)
    return response


def _declared_length(
    request: web.Request, complete: bool, resource_offset: int, recorded: int | None
) -> int | None:
    """The upload's length as this request indicates it (§4.1.3): `Upload-Length`, or the
    offset plus `Content-Length` of a request that completes the upload; every indication
    must agree with the others and with the one recorded (400 inconsistent-upload-length);
    more than --max-upload-size is 413."""
    indicated = set()
    if recorded is not None:
        indicated.add(recorded)
    upload_length = fields.parse_integer(request.headers.get("Upload-Length"))
    if upload_length is not None:
        indicated.add(upload_length)
    if complete and request.content_length is not None:
        indicated.add(resource_offset + request.content_length)
    if len(indicated) > 1:
        raise _Problem(fields.INCONSISTENT_LENGTH, "inconsistent length values for upload", 400)
    length = indicated.pop() if indicated else None
    if length is not None and length < resource_offset:
        raise _Problem(fields.INCONSISTENT_LENGTH, "the length is below the offset", 400)
    settings = request.config_dict[SETTINGS]
    if length is not None and length > settings.max_upload_size:
        raise UploadTooLargeError(
            f"{length} bytes is over the limit of {settings.max_upload_size} bytes"
        )
    return length


async def _send_interim(request: web.Request, version: int, resource: UploadResource) -> None:
    """§4.2.2: `104 (Upload Resumption Supported)` with `Location` and `Upload-Limit` (and,
    Appendix "Draft Version Identification", the interop version), before any of the body
    is read. Written as aiohttp's Expect handler writes `100 Continue`; an HTTP/1.0 client
    gets no interim response (RFC 9110 §15.2)."""
    if request.version < HttpVersion11:
        return
    headers = {
        "Location": f"{UPLOADS_PREFIX}{resource.id}",
        "Upload-Limit": _limit(version, request, resource),
        INTEROP_HEADER: str(version),
    }
    await request.writer.write(fields.interim_response(headers))
    request.writer.output_size = 0  # the interim response is not part of the body count


async def put_file(request: web.Request) -> web.StreamResponse:
    """PUT /files/{path}: resumable when it asks to be (§4.2, "Upgrading To Resumable
    Uploads"), else the plain PUT."""
    version = creation_version(request)
    if version is None:
        return await uploads.put_file(request)
    target = await uploads.put_target(request)
    return await _create(request, version, resumable.resources(request), target)


async def create(request: web.Request) -> web.StreamResponse:
    """POST /uploads/: tus creation, or the draft's with the artifact path in `?path=`."""
    refused = _unspoken_version(request)
    if refused is not None:
        return refused
    version = creation_version(request)
    if version is None:
        return await tus.create(request)
    store = resumable.resources(request)
    raw = request.query.get("path", "")
    path = parse_artifact_path(raw.lstrip("/"))
    if not path or is_internal(path):
        raise InvalidValueError(f"?path= must name an artifact, not {raw!r}")
    outside = resumable.outside_prefix(request, path)
    if outside is not None:
        return json_error(403, outside)
    target = await uploads.file_target(request, path)
    return await _create(request, version, store, target)


async def _create(
    request: web.Request, version: int, store: UploadResources, target: uploads.WriteTarget
) -> web.StreamResponse:
    """§4.2.2: the checks of the PUT were made (`target`); now the resource, the 104, the
    body, and the PUT's answer if it completes the upload."""
    settings = request.config_dict[SETTINGS]
    complete = fields.parse_boolean(request.headers.get("Upload-Complete")) is True
    try:
        length = _declared_length(request, complete, 0, None)
    except _Problem as problem:
        return _problem_response(version, problem, {})
    uploads.expires_at(settings, target.path, uploads.requested_ttl(request))  # 400 now
    resource = await resumable.create(
        request,
        store,
        target.path,
        length=length,
        expires_at=time.time() + settings.upload_expiry,
        ttl=uploads.requested_ttl(request),
        content_type=request.headers.get(hdrs.CONTENT_TYPE),
        sha256=target.expected_sha256,
        protocol=PROTOCOL,
        preconditions=uploads.write_conditions(request),
    )
    await _send_interim(request, version, resource)
    async with resumable.locked(request, store, resource) as appending:
        current = appending.resource
        await resumable.receive(request, appending)
        if complete:
            return await _complete(request, version, store, appending)
    # §4.2.2: "the server MUST include the Location response header field pointing to the
    # upload resource ... Servers are RECOMMENDED to use the 201 (Created) status code."
    headers = _state_headers(version, request, current)
    headers["Location"] = f"{UPLOADS_PREFIX}{current.id}"
    return web.Response(status=201, headers=headers)


async def _complete(
    request: web.Request, version: int, store: UploadResources, appending: Appending
) -> web.StreamResponse:
    """The request marked complete was received whole: the PUT's commit and answer, with
    `Upload-Complete: ?1` (§4.4.2: "the response MUST include the Upload-Complete header
    field with a true value", errors from processing the representation included)."""
    resource = appending.resource
    if resource.length is not None and resource.offset != resource.length:
        problem = _Problem(
            fields.INCONSISTENT_LENGTH, "the upload ends before its declared length", 400
        )
        return _problem_response(version, problem, _state_headers(version, request, resource))
    resource.length = resource.offset
    settings = request.config_dict[SETTINGS]
    requirement = uploads.requirement_for(settings, hdrs.METH_PUT, resource.preconditions or {})
    done = {"Upload-Complete": "?1", INTEROP_HEADER: str(version)}
    try:
        info, replaced = await resumable.complete(
            request, store, appending, requirement, keep_record=True
        )
    except (StorageFullError, StoreUnavailableError):
        raise  # not complete: an empty PATCH with Upload-Complete: ?1 tries again
    except NotFoundError:
        raise  # cancelled (DELETE) meanwhile: nothing was completed
    except ArtifactdError as exc:
        response = error_for_domain(exc)
        response.headers.update(done)
        return response
    response = uploads.put_answer(info, replaced)
    response.headers.update(done)
    response.headers["Upload-Offset"] = str(resource.offset)  # -05 §4, §6: on every answer
    return response


async def _owned(request: web.Request) -> tuple[UploadResources, UploadResource]:
    """The store and the draft upload the URL names, if the request's token owns it (404
    otherwise)."""
    store = resumable.resources(request)
    return store, await resumable.owned(request, store, PROTOCOL)


def _forbidden_fields(
    request: web.Request, version: int, names: tuple[str, ...]
) -> web.Response | None:
    if version == fields.INTEROP_V6 and any(name in request.headers for name in names):
        return json_error(400, f"this request must not carry {', '.join(names)}")
    return None


async def head(request: web.Request) -> web.StreamResponse:
    """§4.3.2 offset retrieval: 204 with the state, and `Cache-Control: no-store`."""
    version = draft_version(request)
    if version is None:
        return _unspoken_version(request) or await tus.head(request)
    refused = _forbidden_fields(request, version, _V6_FORBIDDEN_ON_HEAD)
    if refused is not None:
        return refused
    _, resource = await _owned(request)
    headers = _state_headers(version, request, resource)
    headers["Cache-Control"] = "no-store"
    return web.Response(status=204, headers=headers)


async def patch(request: web.Request) -> web.StreamResponse:
    """§4.4.2 upload append: `application/partial-upload` at `Upload-Offset` (409 with the
    mismatching-upload-offset problem otherwise), `Upload-Complete` required; a completed
    upload is never appended to (400, completed-upload)."""
    version = draft_version(request)
    if version is None:
        return _unspoken_version(request) or await tus.patch(request)
    if request.content_type != fields.PARTIAL_UPLOAD:
        return json_error(415, f"Content-Type must be {fields.PARTIAL_UPLOAD}")
    offset = fields.parse_integer(request.headers.get("Upload-Offset"))
    complete = fields.parse_boolean(request.headers.get("Upload-Complete"))
    if offset is None or complete is None:
        raise InvalidValueError("Upload-Offset (an Integer) and Upload-Complete are required")
    store, resource = await _owned(request)
    outside = resumable.outside_prefix(request, resource.path)
    if outside is not None:
        return json_error(403, outside)
    try:
        _refuse_completed(request, version, resource)
        async with resumable.locked(request, store, resource) as appending:
            current = appending.resource
            _refuse_completed(request, version, current)
            if offset != current.offset:
                # §4.4.2: "MUST include the correct offset in the Upload-Offset header field".
                raise _Problem(
                    fields.MISMATCHING_OFFSET,
                    "offset from request does not match offset of resource",
                    409,
                    expected_offset=current.offset,
                    provided_offset=offset,
                )
            current.length = _declared_length(request, complete, current.offset, current.length)
            await resumable.receive(request, appending)
            if complete:
                return await _complete(request, version, store, appending)
            return web.Response(status=204, headers=_state_headers(version, request, current))
    except _Problem as problem:
        return _problem_response(version, problem, _state_headers(version, request, resource))


def _refuse_completed(request: web.Request, version: int, resource: UploadResource) -> None:
    """§4.4.2: "If the upload is already complete, the server MUST NOT modify the upload
    resource and MUST reject the request": 400 completed-upload (-05 §6: always 400), or
    in version 8 inconsistent-upload-length for a non-empty piece."""
    if not resource.complete:
        return
    if version != fields.INTEROP_V6 and request.content_length != 0:
        raise _Problem(fields.INCONSISTENT_LENGTH, "the upload is already complete", 400)
    raise _Problem(fields.COMPLETED_UPLOAD, "upload is already completed", 400)


async def delete(request: web.Request) -> web.StreamResponse:
    """§4.5.2 cancellation: 204, the resource and its bytes are gone."""
    version = draft_version(request)
    if version is None:
        return _unspoken_version(request) or await tus.delete(request)
    refused = _forbidden_fields(request, version, _V6_FORBIDDEN_ON_DELETE)
    if refused is not None:
        return refused
    store, resource = await _owned(request)
    await resumable.remove(store, resource)
    return web.Response(status=204, headers={INTEROP_HEADER: str(version)})


def advertise(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """§4.1.4: an OPTIONS answer where uploads can be created names `application/partial-
    upload` in `Accept-Patch` (RFC 5789 §3.1) and the limits in `Upload-Limit`."""
    version = draft_version(request) or fields.INTEROP_V8
    response.headers["Accept-Patch"] = fields.PARTIAL_UPLOAD
    response.headers["Upload-Limit"] = _limit(version, request, None)
    return response


def advertising(handler: Handler) -> Handler:
    """`handler`, its answer advertising resumable uploads (`advertise`)."""

    async def advertised(request: web.Request) -> web.StreamResponse:
        return advertise(request, await handler(request))

    return advertised


async def options(request: web.Request) -> web.StreamResponse:
    """OPTIONS /uploads/: tus's versions and extensions, and the draft's limits."""
    return advertise(request, await tus.options(request))


def add_routes(app: web.Application) -> None:
    """/uploads/ for both protocols (a request goes to the draft when it names an interop
    version this server speaks and no `Tus-Resumable`)."""
    app.router.add_route(hdrs.METH_OPTIONS, UPLOADS_PREFIX, options)
    # With Expect: 100-continue, the access policy and the declared length are judged
    # before the body is sent, as for a PUT.
    expect = declared_length_expect_handler
    app.router.add_route(hdrs.METH_POST, UPLOADS_PREFIX, create, expect_handler=expect)
    resource = app.router.add_resource(UPLOADS_PREFIX + "{upload_id}")
    resource.add_route(hdrs.METH_HEAD, head)
    resource.add_route(hdrs.METH_PATCH, patch, expect_handler=expect)
    resource.add_route(hdrs.METH_DELETE, delete)
