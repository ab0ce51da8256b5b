"""Group commit: writes that arrive while a batch is being made durable wait together and go
as the next batch, so many uploads share one hold of the write lock, one metadata
transaction and one fsync per directory instead of taking turns behind one fsync each.

The batcher lives in the worker threads (hops.py), not on the event loop: an upload's own
thread hop flushes its bytes and then joins the queue (`commit_sync`), so a small upload
costs the loop one hop in all and the batch none (each batch cost the loop two hops, two
tasks and a future per write, about a tenth of a 4 KiB PUT's loop time:
docs/performance.md, "Durable small uploads"). The first thread to find no batch running
leads: it takes everything queued, runs the batch's locked step, hands whatever queued
meanwhile to the first of those waiting (who leads the next batch, while this one is made
durable), runs its own batch's flush, and wakes each of its writers with its own outcome
(one item's failure is not the others'). Nothing waits for more items to come: a lone
write goes at once, as a batch of one. A leader is always one of the threads whose writes
it runs, so the writers waiting can never starve the pool of a thread to lead them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

from artifactd.store.filesystem.hops import in_thread

T = TypeVar("T")
R = TypeVar("R")

# Bounds a batch (and so the time its first waiter waits for the rest).
MAX_BATCH = 256

_NEW, _QUEUED, _TAKEN, _WITHDRAWN = range(4)


class Withdrawn(Exception):
    """What `commit_sync` raises for a ticket its caller withdrew before its batch."""


class Ticket(Generic[T, R]):
    """One write's place in the batches: made on the loop, filled by a worker thread."""

    __slots__ = ("batch", "item", "outcome", "state", "wake")

    def __init__(self) -> None:
        self.state = _NEW
        self.item: T | None = None
        self.outcome: R | BaseException | None = None
        self.batch: list[Ticket[T, R]] | None = None  # handed to it to lead
        self.wake = threading.Lock()  # held until its thread may go on (a lead or an outcome)
        self.wake.acquire()

    def result(self) -> R:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return cast(R, self.outcome)


class GroupCommit(Generic[T, R]):
    """Runs batches of submitted items in two steps, in the threads of their writers:
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
        self._lock = threading.Lock()
        self._queue: list[Ticket[T, R]] = []
        self._leading = False  # a batch is in its locked step

    async def submit(self, item: T) -> R:
        """The item's result once its batch is done (one thread hop). Cancelled while still
        queued, the item is dropped (nothing done); cancelled once its batch started, it
        waits for the batch (whose outcome stands) and then gives up: a commit is never
        left half-done by a client that went away."""
        ticket: Ticket[T, R] = Ticket()
        return await self.outcome(ticket, in_thread(self.commit_sync, ticket, item))

    async def outcome(self, ticket: Ticket[T, R], step: asyncio.Future[R]) -> R:
        """The outcome of `step`, a thread hop that ends in `commit_sync(ticket, ...)`,
        cancelled as `submit` describes."""
        try:
            return await asyncio.shield(step)
        except asyncio.CancelledError:
            if self.withdraw(ticket):
                step.add_done_callback(_retrieve)  # its Withdrawn is nobody's news
            else:
                await _settled(step)
            raise

    def withdraw(self, ticket: Ticket[T, R]) -> bool:
        """Drop `ticket` if no batch took it yet (its thread then gets Withdrawn): True if
        so, False if a batch has it (its outcome stands)."""
        with self._lock:
            if ticket.state == _TAKEN:
                return False
            queued = ticket.state == _QUEUED
            ticket.state = _WITHDRAWN
            if queued:
                self._queue.remove(ticket)
                ticket.outcome = Withdrawn()
                ticket.wake.release()
            return True

    def commit_sync(self, ticket: Ticket[T, R], item: T) -> R:
        """In a worker thread: `item`'s result once its batch is done (see the module's
        docstring); Withdrawn if its caller withdrew it first."""
        with self._lock:
            if ticket.state == _WITHDRAWN:
                raise Withdrawn()
            ticket.item, ticket.state = item, _QUEUED
            self._queue.append(ticket)
            batch = None if self._leading else self._take()
        if batch is None:
            ticket.wake.acquire()  # an outcome, or a batch to lead
            batch, ticket.batch = ticket.batch, None
            if batch is None:
                return ticket.result()
        self._lead(batch)
        return ticket.result()

    def _take(self) -> list[Ticket[T, R]]:
        """Under `_lock`: the next batch, taken (no longer withdrawable)."""
        batch = self._queue[: self._max_batch]
        del self._queue[: self._max_batch]
        for taken in batch:
            taken.state = _TAKEN
        self._leading = True
        return batch

    def _lead(self, batch: list[Ticket[T, R]]) -> None:
        finish: Callable[[], Sequence[R | BaseException]] | None = None
        error: BaseException | None = None
        try:
            finish = self._run_batch([cast(T, ticket.item) for ticket in batch])
        except BaseException as exc:  # each writer gets it, as an executor hands it on
            error = exc
        finally:
            self._hand_on()
        outcomes: Sequence[R | BaseException]
        if finish is None:
            outcomes = [cast(BaseException, error)] * len(batch)
        else:
            try:
                outcomes = finish()
                if len(outcomes) != len(batch):  # every writer must be woken, whatever
                    raise RuntimeError(f"{len(outcomes)} outcomes for {len(batch)} writes")
            except BaseException as exc:
                outcomes = [exc] * len(batch)
        for ticket, outcome in zip(batch, outcomes, strict=True):
            ticket.outcome = outcome
            ticket.wake.release()  # the leader's own too: nobody waits on it

    def _hand_on(self) -> None:
        """The locked step done: what queued meanwhile goes to the first of its writers."""
        with self._lock:
            self._leading = False
            batch = self._take() if self._queue else None
        if batch is not None:
            batch[0].batch = batch
            batch[0].wake.release()


def _retrieve(future: asyncio.Future[R]) -> None:
    if not future.cancelled():
        future.exception()


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
