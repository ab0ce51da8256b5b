"""Artifact change events: a bounded in-memory log with increasing ids, and subscribers.

Each server process keeps its own log (with `--workers N`, a client sees the events of the
worker it is connected to). Subscribers get every event published after they subscribed;
`Last-Event-ID` resumes from whatever the log still holds.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

EventKind = Literal["created", "replaced", "deleted", "evicted", "shutdown"]
DEFAULT_LOG_SIZE = 1000
SUBSCRIBER_QUEUE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    kind: EventKind
    data: dict[str, Any]

    def to_sse(self) -> bytes:
        """The event as one Server-Sent Events message."""
        payload = json.dumps(self.data, separators=(",", ":"))
        return f"id: {self.id}\nevent: {self.kind}\ndata: {payload}\n\n".encode()


class Subscription:
    """A subscriber's queue; overflowing it (a stuck client) ends the subscription."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(SUBSCRIBER_QUEUE_SIZE)

    def offer(self, event: Event | None) -> bool:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    async def next(self) -> Event | None:
        """The next event, or None once the subscription has ended."""
        return await self.queue.get()


class EventLog:
    def __init__(self, size: int = DEFAULT_LOG_SIZE) -> None:
        self._events: deque[Event] = deque(maxlen=size)
        self._next_id = 1
        self._subscribers: set[Subscription] = set()
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._closed = False

    def publish(self, kind: EventKind, data: dict[str, Any]) -> Event:
        event = Event(self._next_id, kind, data)
        self._next_id += 1
        self._events.append(event)
        for subscriber in list(self._subscribers):
            if not subscriber.offer(event):
                self.unsubscribe(subscriber)
        path = data.get("path")
        if kind in ("created", "replaced") and isinstance(path, str):
            for waiter in self._waiters.pop(path, set()):
                waiter.set()
        return event

    def since(self, last_id: int) -> Iterator[Event]:
        """Events still held whose id is greater than `last_id`."""
        return (e for e in self._events if e.id > last_id)

    def subscribe(self) -> Subscription:
        """A new subscription; one made after `close` has already ended."""
        subscription = Subscription()
        if self._closed:
            subscription.offer(None)
        else:
            self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.discard(subscription)
            subscription.offer(None)

    def close(self) -> None:
        """End every subscription after a final `shutdown` event. Once: shutdown closes
        the log before it waits for requests in flight, then aiohttp's on_shutdown again."""
        if self._closed:
            return
        self._closed = True
        self.publish("shutdown", {})
        for subscription in list(self._subscribers):
            self.unsubscribe(subscription)

    def appeared(self, path: str) -> asyncio.Event:
        """An asyncio.Event set when `path` is next created or replaced in this process."""
        waiter = asyncio.Event()
        self._waiters.setdefault(path, set()).add(waiter)
        return waiter

    def forget(self, path: str, waiter: asyncio.Event) -> None:
        waiters = self._waiters.get(path)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[path]
