"""Access-log lines of one event-loop turn go out together, whole, within PIPE_BUF."""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections.abc import Iterator

from artifactd.web import accesslog


class RecordingStream:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)


@contextlib.contextmanager
def recorded_stderr() -> Iterator[RecordingStream]:
    """In the test's body: pytest's capture swaps sys.stderr back between phases."""
    stream = RecordingStream()
    with contextlib.redirect_stderr(stream):  # type: ignore[type-var]
        yield stream


async def test_lines_of_one_turn_are_one_write_at_its_end() -> None:
    with recorded_stderr() as stderr:
        lines = accesslog._LinesOfThisTurn()
        for n in range(5):
            lines.add(f"line {n}\n")
        assert stderr.writes == []  # not before the turn ends
        await asyncio.sleep(0)
        assert stderr.writes == ["".join(f"line {n}\n" for n in range(5))]
        lines.add("next turn\n")
        await asyncio.sleep(0)
        assert stderr.writes[1:] == ["next turn\n"]


async def test_writes_stay_within_pipe_buf_and_split_only_between_lines() -> None:
    with recorded_stderr() as stderr:
        lines = accesslog._LinesOfThisTurn()
        sent = [f"{n:04d} " + "x" * 90 + "\n" for n in range(200)]  # ~19 KiB in one turn
        sent.append("é" * 1500 + "\n")  # 3001 bytes in UTF-8, 1501 characters
        sent.append("y" * 5000 + "\n")  # one line longer than PIPE_BUF: written alone
        for line in sent:
            lines.add(line)
        await asyncio.sleep(0)
        assert "".join(stderr.writes) == "".join(sent)
        assert len(stderr.writes) > 5
        for write in stderr.writes:
            assert write.endswith("\n")
            assert len(write.encode()) <= select.PIPE_BUF or write.count("\n") == 1


def test_without_a_running_loop_a_line_is_written_at_once() -> None:
    with recorded_stderr() as stderr:
        lines = accesslog._LinesOfThisTurn()
        lines.add("no loop\n")
        assert stderr.writes == ["no loop\n"]


async def test_flush_writes_what_is_pending() -> None:
    with recorded_stderr() as stderr:
        accesslog._pending_lines.add("at shutdown\n")
        accesslog.flush_access_log()
        assert stderr.writes == ["at shutdown\n"]
        await asyncio.sleep(0)  # the scheduled flush then finds nothing
        assert stderr.writes == ["at shutdown\n"]
