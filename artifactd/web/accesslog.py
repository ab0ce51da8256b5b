"""One access-log line per request on stderr, as text or JSON.

Written straight to the stream rather than through `logging`: at thousands of requests a
second the logging machinery (records, caller lookup, formatters) was the largest single
cost of a small download. Lines still go out whole, one write each.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from artifactd.web.middlewares import elapsed_ms, request_id_for


class _Clock:
    """The current UTC time as ISO 8601, formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
        return self._text


_clock = _Clock()


def duration_ms(request: web.BaseRequest, aiohttp_seconds: float) -> float:
    """The request's duration on the clock of X-Response-Time. aiohttp's own figure comes
    from the loop's clock, which under uvloop moves in whole milliseconds (every fast
    request read 0.000 or 1.000ms); it stays the answer for a request refused before the
    middlewares."""
    elapsed = elapsed_ms(request)
    return aiohttp_seconds * 1000 if elapsed is None else elapsed


class _AccessLogger(AbstractAccessLogger):
    stream: TextIO | None = None  # None: sys.stderr as it is at the time of the write

    def _write(self, line: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(line)

    @property
    def enabled(self) -> bool:
        return True


class TextAccessLogger(_AccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_: float) -> None:
        self._write(
            f'{_clock.now()} {request.remote or "-"} "{request.method} {request.raw_path}" '
            f"{response.status} {response.body_length} {duration_ms(request, time_):.3f}ms "
            f"rid={request_id_for(request)}\n"
        )


class JsonAccessLogger(_AccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_: float) -> None:
        fields = {
            "time": _clock.now(),
            "remote": request.remote or "-",
            "method": request.method,
            "path": request.raw_path,
            "status": response.status,
            "bytes": response.body_length,
            "duration_ms": round(duration_ms(request, time_), 3),
            "request_id": request_id_for(request),
        }
        self._write(json.dumps(fields) + "\n")


def access_logger_class(log_format: str) -> type[AbstractAccessLogger]:
    return JsonAccessLogger if log_format == "json" else TextAccessLogger


ACCESS_LOGGER = logging.getLogger("artifactd.access")  # handed to aiohttp, which wants one
