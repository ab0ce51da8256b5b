"""The `/files/{tail}` resource, whose methods depend on the kind of URL.

A file URL takes GET, HEAD and PUT; a directory URL (empty, ending in '/' or in a `.`
segment: `requested_path` decides) takes GET, HEAD and POST (the upload form); both take
DELETE (a collection's is WebDAV's) and WebDAV's OPTIONS, PROPFIND, MKCOL, COPY and MOVE. Any other
method is the router's 405, whose `Allow` names that kind's methods (RFC 9110 §15.5.6).
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import UrlMappingMatchInfo

from artifactd.errors import ArtifactdError
from artifactd.web.files import requested_path

# WebDAV's methods (RFC 4918) name a file or a directory either way: clients write
# collections without their slash (`MKCOL /files/new`, `PROPFIND /files/dir`).
DAV_METHODS = frozenset({hdrs.METH_OPTIONS, "PROPFIND", "MKCOL", "COPY", "MOVE", hdrs.METH_DELETE})
FILE_METHODS = DAV_METHODS | {hdrs.METH_GET, hdrs.METH_HEAD, hdrs.METH_PUT}
DIRECTORY_METHODS = DAV_METHODS | {hdrs.METH_GET, hdrs.METH_HEAD, hdrs.METH_POST}
_EITHER = FILE_METHODS & DIRECTORY_METHODS


class FilesResource(web.DynamicResource):
    async def resolve(self, request: web.Request) -> tuple[UrlMappingMatchInfo | None, set[str]]:
        match_info, allowed = await super().resolve(request)
        if not allowed or (match_info is not None and request.method in _EITHER):
            return match_info, allowed  # another path, or a method every kind takes
        try:
            _, is_dir_request = requested_path(request)
        except ArtifactdError:
            return match_info, allowed  # the handler refuses the path itself (400/404)
        methods = allowed & (DIRECTORY_METHODS if is_dir_request else FILE_METHODS)
        return (match_info if request.method in methods else None), methods
