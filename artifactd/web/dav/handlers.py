"""OPTIONS, PROPFIND, MKCOL, COPY, MOVE and DELETE of a collection under `/files/` (RFC 4918
class 1).

Thin steps over the store like the other handlers: parse, ask the store, answer. Errors are
JSON as everywhere, except PROPFIND's Depth: infinity refusal, whose body is the §16
precondition element clients look for.
"""

from __future__ import annotations

from aiohttp import hdrs, web

from artifactd.errors import (
    ConflictError,
    IsDirectoryError,
    NotDirectoryError,
    NotFoundError,
    PreconditionFailedError,
    UploadTooLargeError,
)
from artifactd.http.digests import etag_for_digest
from artifactd.http.mediatypes import guess_content_type
from artifactd.paths import parent_and_name
from artifactd.store.base import ArtifactInfo, DirEntry, Store
from artifactd.store.kinds import Kind, kind_of
from artifactd.web.dav import headers
from artifactd.web.dav.properties import (
    MAX_BODY_BYTES,
    Resource,
    finite_depth_error,
    multistatus,
    parse_propfind,
)
from artifactd.web.dav.transfer import (
    copy_file,
    destination_requirement,
    move_file,
    remove_tree,
    transfer_tree,
)
from artifactd.web.errors import json_error
from artifactd.web.files import directory_url, file_url, requested_path
from artifactd.web.keys import SETTINGS, STORE
from artifactd.web.uploads import body_chunks, check_mutable, delete_file

XML = "application/xml"
# What each kind of resource answers (OPTIONS' Allow, and MKCOL's 405).
ALLOW: dict[Kind, str] = {
    "file": "OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, COPY, MOVE",
    "dir": "OPTIONS, GET, HEAD, POST, DELETE, PROPFIND, COPY, MOVE",
    None: "OPTIONS, PUT, MKCOL",
}
ROOT_ALLOW = "OPTIONS, GET, HEAD, POST, PROPFIND"


async def options(request: web.Request) -> web.Response:
    """`DAV: 1` and the methods this path supports (§9.1 of RFC 9110, §10.1)."""
    path, _ = requested_path(request)
    allow = ROOT_ALLOW if not path else ALLOW[await kind_of(request.app[STORE], path)]
    return web.Response(headers={"DAV": "1", "Allow": allow, "MS-Author-Via": "DAV"})


async def propfind(request: web.Request) -> web.Response:
    """207 Multi-Status for the resource (Depth 0) and its members (Depth 1): one
    `list_dir` of the directory asked for, never a walk; Depth: infinity is 403 (§9.1)."""
    path, _ = requested_path(request)
    depth = headers.depth(request, default="infinity")
    if depth == "infinity":
        return web.Response(status=403, body=finite_depth_error(), content_type=XML)
    wanted = parse_propfind(await small_body(request))
    resources = await describe(request.app[STORE], path, depth)
    return web.Response(
        status=207, body=multistatus(resources, wanted), content_type=XML, charset="utf-8"
    )


async def small_body(request: web.Request) -> bytes:
    """A body that must be small: 413 past MAX_BODY_BYTES, announced or not."""
    too_large = UploadTooLargeError(f"a PROPFIND body is limited to {MAX_BODY_BYTES} bytes")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in body_chunks(request, request.app[SETTINGS]):
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return bytes(body)


async def describe(store: Store, path: str, depth: str) -> list[Resource]:
    if path:
        try:
            return [file_resource(await store.info(path))]
        except IsDirectoryError:
            pass
    name = parent_and_name(path)[1] if path else ""
    if depth == "0":
        return [Resource(directory_url(path), name, is_collection=True)]
    try:
        entries = await store.list_dir(path)
    except NotDirectoryError:  # replaced by a file meanwhile
        return [file_resource(await store.info(path))]
    newest = max((e.modified_at for e in entries), default=None)
    own = Resource(directory_url(path), name, is_collection=True, modified_at=newest)
    return [own, *(entry_resource(path, entry) for entry in entries)]


def file_resource(info: ArtifactInfo) -> Resource:
    return Resource(
        href=file_url(info.path),
        name=parent_and_name(info.path)[1],
        is_collection=False,
        size=info.size,
        content_type=info.content_type,
        etag=info.etag,
        modified_at=info.modified_at,
        created_at=info.created_at,
    )


def entry_resource(dir_path: str, entry: DirEntry) -> Resource:
    """A member from the listing alone: its type guessed from the name, its ETag known
    only with its digest (a PROPFIND of the file itself has both)."""
    path = f"{dir_path}/{entry.name}" if dir_path else entry.name
    if entry.type == "dir":
        return Resource(directory_url(path), entry.name, True, modified_at=entry.modified_at)
    return Resource(
        href=file_url(path),
        name=entry.name,
        is_collection=False,
        size=entry.size,
        content_type=guess_content_type(path),
        etag=etag_for_digest(entry.sha256) if entry.sha256 else None,
        modified_at=entry.modified_at,
    )


async def mkcol(request: web.Request) -> web.Response:
    """201; 405 where something is; 409 without a parent directory; 415 with a body
    (§9.3.1: no MKCOL body format is defined here)."""
    path, _ = requested_path(request)
    if (request.content_length or 0) > 0 or hdrs.TRANSFER_ENCODING in request.headers:
        return json_error(415, "MKCOL takes no body")
    store = request.app[STORE]
    try:
        made = path != "" and await store.make_dir(path)
    except (NotFoundError, NotDirectoryError) as exc:
        raise ConflictError(f"the parent of {path} is not a directory") from exc
    if not made:
        allow = ROOT_ALLOW if not path else ALLOW[await kind_of(store, path)]
        return json_error(405, "something exists at that path", {"Allow": allow})
    return web.Response(status=201, headers={"Location": directory_url(path)})


async def copy(request: web.Request) -> web.Response:
    return await _transfer(request, move=False)


async def move(request: web.Request) -> web.Response:
    return await _transfer(request, move=True)


async def _transfer(request: web.Request, *, move: bool) -> web.Response:
    """COPY (§9.8) and MOVE (§9.9): 201 when the destination was new, 204 when replaced."""
    source, _ = requested_path(request)
    destination = headers.destination_path(request)
    may_overwrite = headers.overwrite(request)
    depth = headers.depth(request, default="infinity")
    if depth == "1" or (move and depth != "infinity"):
        raise web.HTTPBadRequest(reason=f"Depth {depth} is not allowed here")
    if not source or not destination:
        raise web.HTTPForbidden(reason="the root cannot be copied, moved or replaced")
    if destination == source or destination.startswith(source + "/"):
        raise web.HTTPForbidden(reason="the destination is the source or inside it")
    store, settings = request.app[STORE], request.app[SETTINGS]
    source_kind = await kind_of(store, source)
    if source_kind is None:
        raise NotFoundError(source)
    parent = parent_and_name(destination)[0]
    if parent and await kind_of(store, parent) != "dir":
        raise ConflictError(f"the parent of {destination} is not a directory")
    requirement = destination_requirement(settings, may_overwrite=may_overwrite)
    existing = await kind_of(store, destination)
    if existing is not None:
        if not may_overwrite:
            raise PreconditionFailedError(f"{destination} exists and Overwrite is F")
        # --immutable or a policy: a file replaced, or the files of a tree replaced.
        check_mutable(settings, destination if existing == "file" else f"{destination}/")
        if existing == "dir":
            for policy in settings.policies:
                if policy.prefix.startswith(f"{destination}/"):
                    check_mutable(settings, policy.prefix)
    if existing == "dir":  # what is there goes first (§9.8.4), or a file cannot land
        await remove_tree(request, destination)
    elif existing == "file" and source_kind == "dir":
        await store.delete(destination)
    if source_kind == "file":
        if move:
            await move_file(request, source, destination, requirement)
        else:
            await copy_file(request, source, destination, requirement)
    else:
        await transfer_tree(
            request, source, destination, requirement, move=move, members=depth != "0"
        )
    return web.Response(status=201 if existing is None else 204)


async def delete(request: web.Request) -> web.Response:
    """DELETE of a file is the artifact's delete (`uploads.delete_file`); of a collection
    (RFC 4918 §9.6.1), every file under it and the collection, as if `Depth: infinity`
    (the only Depth allowed there): 204. The root is never deleted (403)."""
    path, is_dir_request = requested_path(request)
    if not is_dir_request:
        try:
            return await delete_file(request)
        except IsDirectoryError:
            pass  # a collection named without its slash, as WebDAV clients do
    if not path:
        raise web.HTTPForbidden(reason="the root cannot be deleted")
    if headers.depth(request, default="infinity") != "infinity":
        raise web.HTTPBadRequest(reason="DELETE of a collection takes only Depth: infinity")
    if await kind_of(request.app[STORE], path) != "dir":
        raise NotFoundError(path)
    await remove_tree(request, path)
    return web.Response(status=204)


# The RFC 4918 methods (besides OPTIONS) and their handlers, for the router.
METHODS = {
    "PROPFIND": propfind,
    "MKCOL": mkcol,
    "COPY": copy,
    "MOVE": move,
    hdrs.METH_DELETE: delete,
}
