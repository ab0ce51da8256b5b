"""Process-wide settings every artifactd server process needs, however it was started
(`artifactd serve`, its workers, or gunicorn through `artifactd.app:serve_app` or
`artifactd.app:create_app()`)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

# aiohttp's default, stated here because it is part of the security contract.
MAX_HEADER_FIELD_BYTES = 8190
M_ARENA_MAX = -8  # glibc's malloc.h


def harden_process() -> None:
    """Idempotent: digit limit for lengths, one-line parser errors, fewer malloc arenas."""
    allow_header_sized_integers()
    protocol_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, OneLineParserErrors) for f in protocol_log.filters):
        protocol_log.addFilter(OneLineParserErrors())
    limit_malloc_arenas()


def allow_header_sized_integers() -> None:
    """Let `int()` read any digit string that fits in one header field.

    aiohttp's pure-Python parser (AIOHTTP_NO_EXTENSIONS=1) converts Content-Length with
    `int()`; past Python's default of 4300 digits that raised ValueError inside the
    protocol's data_received and dropped the connection without an answer (the C parser
    answers 400). A header field holds at most MAX_HEADER_FIELD_BYTES, so this bound keeps
    the conversion cheap while letting the request reach a proper 400.
    """
    current = sys.get_int_max_str_digits()
    if 0 < current < MAX_HEADER_FIELD_BYTES:
        sys.set_int_max_str_digits(MAX_HEADER_FIELD_BYTES)


# Failures that are the client's doing: a malformed request head or body, a disconnect.
CLIENT_FAULTS = (HttpProcessingError, web.RequestPayloadError, ConnectionResetError)


class OneLineParserErrors(logging.Filter):
    """aiohttp logs each malformed request ("Error handling request"), each malformed
    body left unread ("Unhandled exception") and each client gone mid-request with a full
    traceback, so anyone able to connect could flood the log with them. All are the
    client's doing: log one line with the reason instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, CLIENT_FAULTS):
            message = exc.message if isinstance(exc, HttpProcessingError) else str(exc)
            reason = " ".join(str(message).split())[:200] or type(exc).__name__
            record.msg = f"{record.getMessage()}: {reason}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives every thread that allocates its own malloc arena and keeps what each
    once held; the worker threads (file reads, sendfile, hashing) would each pin
    megabytes after a busy spell. Two arenas are plenty for one loop and its helpers."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas)


M_ARENA_MAX = -8  # glibc's malloc.h
