"""Group commit: writes that arrive while a batch is being made durable wait together and go
as the next batch, so many uploads share one hold of the write lock, one metadata
transaction and one fsync per directory instead of taking turns behind one fsync each.

The batcher lives on the event loop (one per store, so one per process): `submit` queues an
item and waits for its outcome; a single runner takes everything queued, runs its locked step
in a worker thread (a hop: hops.py), hands the flush and the answers (each item's own: one
item's failure is not the others') to another, and starts over with what arrived meanwhile.
Nothing waits for more items to come: a lone write goes at once, as a batch of one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from artifactd.store.filesystem.hops import in_thread

T = TypeVar("T")
R = TypeVar("R")

# Bounds a batch (and so the time its first waiter waits for the rest).
MAX_BATCH = 256


class GroupCommit(Generic[T, R]):
    """Runs batches of submitted items in two steps, each in a worker thread:
    `run_batch(items)` (under the write lock, one batch at a time) returns `finish`, which
    makes the batch durable (outside the lock) and returns, in order, each item's result or
    the exception that item fails with. The next batch starts as soon as `run_batch` is
    done: its locked step overlaps the previous batch's flush."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[T]], Callable[[], Sequence[R | BaseException]]],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None
        self._finishing: set[asyncio.Task[None]] = set()  # batches being flushed

    async def submit(self, item: T) -> R:
        """The item's result once its batch is done. Cancelled while still queued, the item
        is dropped (nothing done); cancelled once its batch started, it waits for the batch
        (whose outcome stands) and then gives up: a commit is never left half-done by a
        client that went away."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        entry = (item, future)
        self._queue.append(entry)
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run())
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if any(queued is entry for queued in self._queue):
                self._queue.remove(entry)
                raise
            await _settled(future)
            raise

    async def _run(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            try:
                finish = await in_thread(self._run_batch, [item for item, _ in batch])
            except asyncio.CancelledError:
                _cancel(batch)  # the loop is shutting down
                raise
            except Exception as exc:
                _answer(batch, [exc] * len(batch))
                continue
            task = asyncio.get_running_loop().create_task(self._finish(batch, finish))
            self._finishing.add(task)
            task.add_done_callback(self._finishing.discard)

    async def _finish(
        self,
        batch: list[tuple[T, asyncio.Future[R]]],
        finish: Callable[[], Sequence[R | BaseException]],
    ) -> None:
        try:
            outcomes = await in_thread(finish)
        except asyncio.CancelledError:
            _cancel(batch)
            raise
        except Exception as exc:
            outcomes = [exc] * len(batch)
        _answer(batch, outcomes)


def _answer(
    batch: list[tuple[T, asyncio.Future[R]]], outcomes: Sequence[R | BaseException]
) -> None:
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _cancel(batch: list[tuple[T, asyncio.Future[R]]]) -> None:
    for _, future in batch:
        future.cancel()


async def _settled(future: asyncio.Future[R]) -> None:
    """Wait for `future` whatever cancels the waiter meanwhile; its outcome is dropped."""
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            continue
        except Exception:
            pass
    if not future.cancelled():
        future.exception()  # retrieved: asyncio does not log it as forgotten
