"""Noticing, at once, that a client left while its request idles (a `?wait`).

aiohttp's server, as `artifactd serve` runs it, does not cancel a handler whose client
disconnected (handler_cancellation is off: uploads and downloads must see the broken
connection themselves and finish their bookkeeping). A request that only waits reads and
writes nothing, so it would notice only when its wait ended: 5,000 abandoned `?wait=300`
requests polled the store for five minutes. `Departures` wraps the low-level server's
`connection_lost` and wakes the requests watching that connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from aiohttp import web


class Watch:
    """One waiting request's view of its connection: `gone` once it closed, and `wake`,
    the event it currently waits on, set when that happens."""

    __slots__ = ("gone", "wake")

    def __init__(self) -> None:
        self.gone = False
        self.wake: asyncio.Event | None = None

    def depart(self) -> None:
        self.gone = True
        if self.wake is not None:
            self.wake.set()


class Departures:
    """The requests watching their connections, by connection."""

    def __init__(self) -> None:
        self._watches: dict[object, set[Watch]] = {}

    def install(self, server: web.Server) -> None:
        """Be told by `server` (a set-up AppRunner's) of every connection that ends. Without
        it (aiohttp's test server, which cancels the handler anyway) a watch still sees a
        closed transport each time its request wakes."""
        lost = server.connection_lost

        def connection_lost(handler: web.RequestHandler, exc: BaseException | None = None) -> None:
            lost(handler, exc)
            for watch in self._watches.pop(handler, ()):
                watch.depart()

        server.connection_lost = connection_lost  # type: ignore[method-assign]

    @contextlib.contextmanager
    def watch(self, request: web.BaseRequest) -> Iterator[Watch]:
        watch = Watch()
        protocol = request.protocol
        watches = self._watches.setdefault(protocol, set())
        watches.add(watch)
        try:
            yield watch
        finally:
            watches.discard(watch)
            if not watches and self._watches.get(protocol) is watches:
                del self._watches[protocol]

    def __len__(self) -> int:
        """How many requests watch their connections."""
        return sum(len(w) for w in self._watches.values())


def has_departed(request: web.BaseRequest, watch: Watch) -> bool:
    transport = request.transport
    return watch.gone or transport is None or transport.is_closing()
