"""Writing the access log: one line per request on stderr (the line itself is
`pipeline`'s, as text or JSON).

Written straight to the stream rather than through `logging`: at thousands of requests a
second the logging machinery (records, caller lookup, formatters) was the largest single
cost of a small download. Lines go out whole, those of one event-loop turn together.
"""

from __future__ import annotations

import asyncio
import logging
import select
import sys

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from artifactd.web.pipeline import json_log_line, text_log_line


class _LinesOfThisTurn:
    """Lines logged during one turn of the event loop, written when it ends.

    Under load one turn finishes many requests, and their lines then cost one write(2)
    instead of one each (a system call per line is a visible share of a small download,
    docs/performance.md). A line waits only for the rest of its turn (microseconds, not a
    timer), so nothing lingers in a buffer when the server idles or is killed. Writes stay
    within PIPE_BUF at line boundaries, so on a pipe shared by `--workers` processes no
    line is split by another's write."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def add(self, line: str) -> None:
        if not self._lines:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no event loop running: write at once
                sys.stderr.write(line)
                return
        self._lines.append(line)

    def flush(self) -> None:
        lines, self._lines = self._lines, []
        chunk: list[str] = []
        size = 0
        for line in lines:
            most_bytes = len(line) if line.isascii() else 4 * len(line)  # UTF-8: 4 at most
            if chunk and size + most_bytes > select.PIPE_BUF:
                sys.stderr.write("".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += most_bytes
        if chunk:
            sys.stderr.write("".join(chunk))


_pending_lines = _LinesOfThisTurn()


def flush_access_log() -> None:
    """Write out lines still waiting for the end of their loop turn (at shutdown)."""
    _pending_lines.flush()


class _AccessLogger(AbstractAccessLogger):
    def _write(self, line: str) -> None:
        _pending_lines.add(line)

    @property
    def enabled(self) -> bool:
        return True


class TextAccessLogger(_AccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_: float) -> None:
        self._write(text_log_line(request, response, time_))


class JsonAccessLogger(_AccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_: float) -> None:
        self._write(json_log_line(request, response, time_))


def access_logger_class(log_format: str) -> type[AbstractAccessLogger]:
    return JsonAccessLogger if log_format == "json" else TextAccessLogger


ACCESS_LOGGER = logging.getLogger("artifactd.access")  # handed to aiohttp, which wants one
