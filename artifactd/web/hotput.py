"""PUTs to `/files/<path>` routed without the router: the same resource, route and
middlewares as the Application's.

Before a small PUT's handler runs, the Application resolves its URL (the router, then the
/files/ resource), builds and freezes a match info, looks for `Expect`, and runs aiohttp's
middleware that sets the current app around the middleware chain: about 5 % of the event
loop's CPU per 4 KiB PUT (docs/performance.md, "Where the CPU of a 4 KiB PUT goes"). Here a
PUT under `/files/` without `Expect` is resolved by the /files/ resource itself
(`routes.FilesResource.resolve`: the routing rule of file and directory URLs, written once)
and, when it routes to its PUT handler, sent through the Application's own middlewares
(`app.middlewares`, the same functions in the same order, chained once as aiohttp chains
them) around that handler. The answer is the Application's. A PUT the resource does not
route (a directory URL: 405 from the router; a path it refuses: the handler's 400/404 via
the router) or one carrying `Expect` (its handler runs before the middlewares) goes to the
Application unchanged.
"""

from __future__ import annotations

import functools

from aiohttp import hdrs, web

from artifactd.web.download.hot import LowLevelHandler
from artifactd.web.files import FILES_PREFIX
from artifactd.web.middlewares import Handler
from artifactd.web.routes import FilesResource


class HotPut:
    """The low-level server's request handler: route PUTs under /files/ to their route's
    middleware chain directly, pass on the rest."""

    def __init__(
        self,
        app: web.Application,
        resource: FilesResource,
        route: web.AbstractRoute,
        next_handler: LowLevelHandler,
    ) -> None:
        self._app = app
        self._resource = resource
        self._route = route
        chain: Handler = route.handler
        for middleware in reversed(app.middlewares):
            chain = functools.partial(middleware, handler=chain)
        self._chain = chain
        self._next = next_handler

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        if (
            request.method == hdrs.METH_PUT
            and isinstance(request, web.Request)
            and hdrs.EXPECT not in request.headers
            and request.rel_url.raw_path.startswith(FILES_PREFIX)
        ):
            match_info, _ = await self._resource.resolve(request)
            if match_info is not None and match_info.route is self._route:
                # What Application._handle does with a match before its middlewares.
                match_info.add_app(self._app)
                match_info.freeze()
                request._match_info = match_info
                return await self._chain(request)
        return await self._next(request)


def install_hot_put(app: web.Application, server: web.Server) -> None:
    """Put the PUT path in front of what `server` (a set-up AppRunner's) runs now, if the
    app's middlewares are all new-style (which aiohttp chains the same way)."""
    if not all(getattr(m, "__middleware_version__", None) == 1 for m in app.middlewares):
        return
    resources = [r for r in app.router.resources() if isinstance(r, FilesResource)]
    if len(resources) != 1:
        return
    (resource,) = resources
    routes = [route for route in resource if route.method == hdrs.METH_PUT]
    if len(routes) != 1:
        return
    server.request_handler = HotPut(app, resource, routes[0], server.request_handler)
