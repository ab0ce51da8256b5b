"""The hop pool: a step runs in a worker thread and its outcome reaches the caller's loop,
errors included; a cancelled caller leaves its step running; threads are bounded and
reused."""

from __future__ import annotations

import asyncio
import threading
import weakref

import pytest

from artifactd.store.filesystem.hops import HopPool, in_thread


async def test_a_step_runs_off_the_loop_and_answers_on_it() -> None:
    loop_thread = threading.get_ident()
    assert await in_thread(threading.get_ident) != loop_thread
    assert await in_thread(lambda a, b: a + b, 2, 3) == 5


async def test_a_step_that_raises_raises_in_its_caller() -> None:
    def fail() -> None:
        raise KeyError("nope")

    with pytest.raises(KeyError):
        await in_thread(fail)


@pytest.mark.allow_blocking
async def test_a_cancelled_caller_leaves_its_step_running_to_its_end() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def step() -> None:
        started.set()
        release.wait(5)
        finished.set()

    waiter = asyncio.ensure_future(in_thread(step))
    await asyncio.to_thread(started.wait, 5)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await asyncio.to_thread(finished.wait, 5)
    assert finished.is_set()
    assert await in_thread(lambda: "still serving") == "still serving"


@pytest.mark.allow_blocking
async def test_threads_are_bounded_and_reused() -> None:
    pool = HopPool(max_threads=3)
    gate = threading.Event()
    names: set[int] = set()

    def step() -> None:
        names.add(threading.get_ident())
        gate.wait(5)

    try:
        waiting = [pool.run(step) for _ in range(10)]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(*waiting)
        assert len(names) == 3
        again = await asyncio.gather(*(pool.run(threading.get_ident) for _ in range(10)))
        assert set(again) <= names
    finally:
        gate.set()
        pool.stop()  # its threads are not daemons: a failed test must not keep them


async def test_steps_of_many_loops_each_answer_on_their_own() -> None:
    def on_a_new_loop() -> int:
        return asyncio.run(_one_hop())

    assert await asyncio.to_thread(on_a_new_loop) == 7


async def _one_hop() -> int:
    return await in_thread(lambda: 7)


async def test_an_idle_thread_keeps_nothing_of_its_last_step() -> None:
    # An idle thread holding its last outcome kept an upload (and its cycles) alive until
    # that thread's next hop.
    class Outcome:
        pass

    pool = HopPool(max_threads=1)
    try:
        outcome = await pool.run(Outcome)
        gone = weakref.ref(outcome)
        del outcome
        await asyncio.sleep(0.05)  # the thread is back waiting for work
        assert gone() is None
    finally:
        pool.stop()


@pytest.mark.allow_blocking
async def test_sixteen_flushes_are_in_flight_at_once() -> None:
    # Each step waits on the disk (an fsync): 16 concurrent uploads must all have their flush
    # in flight together, as the disk absorbs them at once; the default executor's
    # cpu_count + 4 threads queued them behind one another. Here each step waits until all
    # 16 are running.
    pool = HopPool()
    together = threading.Barrier(16, timeout=5)
    try:
        arrivals = await asyncio.gather(*(pool.run(together.wait) for _ in range(16)))
        assert sorted(arrivals) == list(range(16))
    finally:
        together.abort()
        pool.stop()
