"""The thread hops of uploads and commits: a lean pool of worker threads.

A small durable PUT makes one hop in all: its temp file made, written, hashed and flushed,
then its batch joined (or led) in the same thread (groupcommit.py). Through
`asyncio.to_thread` each hop cost the event loop about 15 µs of CPU (21 µs as an upload's
shielded task): a `concurrent.futures.Future` with its `Condition`, the executor's lock and
idle semaphore, and the asyncio future chained to it. Here a hop is a loop future, a queue
put, and one `call_soon_threadsafe` when the work is done: about 4 µs (docs/performance.md,
"Durable small uploads").

At most `MAX_THREADS` threads (why more than the default executor's: see there), started as
work finds none idle; not daemons, so a step already running finishes before the
interpreter exits (they are told to stop first, as `concurrent.futures` does). A cancelled
caller does not stop its step: it runs to its end and its outcome is dropped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# Every step of this pool waits on the disk: an upload's write and fsync, a batch's durable
# metadata transaction, its directory fsyncs. The disk absorbs many flushes at once, so the
# bound is on flushes in flight, not on cores: with the default executor's cpu_count + 4
# (6 threads on 2 cores) `bench/fsync_ceiling.py` made 2,210 new 4 KiB files durable per
# second with 6 writers against 6,176 with 16 and 4,877 with 32, and 16 concurrent PUTs
# waited for a thread; with 32, 4 KiB PUTs at -c16 went from 1,708-1,907 to 2,158-2,163 per
# second (docs/performance.md, "Durable small uploads"). 32 leaves every connection of such
# a load a thread for its flush and its wait for its batch (group commit runs in these
# threads: a batch's leader is always one of its writers). Threads start
# only when work finds none idle, so a quiet server has few; CPU-bound work (hashing a large
# upload's batch) releases the GIL and the kernel shares the cores among them. The loop's
# default executor (other blocking work: opens, listings) keeps its own cpu_count + 4.
MAX_THREADS = 32

_Work = tuple[asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]]


class HopPool:
    """Worker threads taking `(future, function, arguments)` from one queue."""

    def __init__(self, max_threads: int = MAX_THREADS) -> None:
        self._max_threads = max_threads
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._stopping = False
        self._pid = os.getpid()

    def run(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """`function(*args)` in a worker thread; its outcome on the running loop's future."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if self._pid != os.getpid():
            self._forked()
        with self._lock:
            if self._stopping:
                raise RuntimeError("cannot hop to a thread after interpreter shutdown")
            start = self._idle <= 0 and self._threads < self._max_threads
            if start:
                self._threads += 1
            else:
                self._idle -= 1  # taken by this item (or queued behind the busy ones)
        self._queue.put((future, function, args))
        if start:
            threading.Thread(target=self._work, name="artifactd-hop", daemon=False).start()
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, function, args = item
            try:
                result = function(*args)
            except BaseException as exc:  # handed to the caller, as an executor does
                _deliver(future, None, exc)
            else:
                _deliver(future, result, None)
                del result
            # No reference to the last work or its outcome while idle: an idle thread would
            # keep them (and any cycle through them) alive until its next hop.
            del item, future, function, args
            with self._lock:
                self._idle += 1

    def stop(self) -> None:
        """Let every thread end once the queue is done (at interpreter exit)."""
        with self._lock:
            self._stopping = True
            threads = self._threads
        for _ in range(threads):
            self._queue.put(None)

    def _forked(self) -> None:
        """In a child process the parent's threads do not exist: start afresh."""
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = self._idle = 0
        self._pid = os.getpid()


def _deliver(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
        future.get_loop().call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return  # its caller was cancelled
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


_pool = HopPool()
# Before non-daemon threads are joined at exit (what concurrent.futures registers too).
threading._register_atexit(_pool.stop)  # type: ignore[attr-defined]


def in_thread(function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """`function(*args)` in one of the process's hop threads (see the module's docstring)."""
    return _pool.run(function, *args)
