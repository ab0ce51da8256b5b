"""The bookkeeping of every answer: request start (id, clock), the headers every response
carries, the metrics tally and the access-log line.

Both ways in call it: the Application (errors middleware, the response-prepare signal, the
metrics middleware, the access logger) and the hot path in front of it. A rule about what
every request records or every response carries is written here, once.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import time
import weakref

from aiohttp import hdrs, web
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from multidict import istr
from yarl import URL

from artifactd.metrics import TrafficTally
from artifactd.settings import Settings
from artifactd.web.keys import REQUEST_ID, STARTED_AT, STARTED_RESPONSE, UNREADABLE_TARGET

# An incoming X-Request-Id is echoed only when it is this tame (it lands in logs and headers).
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# Header names as `istr`: case-insensitive lookups and stores without folding the name.
X_REQUEST_ID = istr("X-Request-Id")
X_RESPONSE_TIME = istr("X-Response-Time")
X_CONTENT_TYPE_OPTIONS = istr("X-Content-Type-Options")

# The methods metrics count by name (RFC 9110's, PATCH, and WebDAV's); any other counts as
# OTHER, so a client inventing methods cannot add series (the pure-Python parser takes any
# token as a method).
COUNTED_METHODS = frozenset(
    {
        *hdrs.METH_ALL,
        "PROPFIND",
        "PROPPATCH",
        "MKCOL",
        "COPY",
        "MOVE",
        "LOCK",
        "UNLOCK",
    }
)
OTHER_METHOD = "OTHER"


def method_label(method: str) -> str:
    """The metrics label of a request's method: its name if known, else `OTHER`."""
    return method if method in COUNTED_METHODS else OTHER_METHOD


# Ids are a random per-process prefix and a counter: unique across processes and restarts
# with overwhelming probability, and far cheaper than a uuid4 per request.
_ID_PREFIX = secrets.token_hex(8)
_id_counter = itertools.count(1)


def _new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):08x}"


# -- Request start ---------------------------------------------------------------------

# What an unreadable request target is replaced with (the answer is a 400 whatever it is).
_PLACEHOLDER_URL = URL.build(path="/", encoded=True)


def guard_request_factory(server: web.Server) -> None:
    """Make every request message the low-level server parses into a request artifactd
    answers, then closes the connection where the message's end is unknown.

    - `CONNECT`: artifactd is no proxy; the pure-Python parser reads all that follows a
      CONNECT as its tunnel, so the connection outlived the keep-alive timeout. It is
      answered (its target names no artifact) and closed.
    - A target yarl cannot read (the pure-Python parser passes an absolute or authority
      form with raw UTF-8 in the host, the C parser refuses it with 400): building the
      request raised inside aiohttp's connection loop, which then stopped without answering
      or closing. It is answered 400 (`UNREADABLE_TARGET`) and closed.
    Installed on the server `artifactd serve` runs (aiohttp's test server has none)."""
    make = server.request_factory

    def request_factory(
        message: RawRequestMessage, payload: StreamReader, *args: object
    ) -> web.BaseRequest:
        if message.method == hdrs.METH_CONNECT:
            message = message._replace(should_close=True)
            # The tunnel's bytes are no body: ended now, or aiohttp would linger reading
            # them for 10 s after the answer.
            payload.feed_eof()
        try:
            return make(message, payload, *args)  # type: ignore[arg-type]
        except ValueError:  # UnicodeError among them
            placeholder = message._replace(url=_PLACEHOLDER_URL, should_close=True)
            request = make(placeholder, payload, *args)  # type: ignore[arg-type]
            request[UNREADABLE_TARGET] = True
            return request

    server.request_factory = request_factory


def begin_request(request: web.BaseRequest) -> None:
    """Start the request's clock and give it its id: the first step of every answer. Once:
    a request the hot path began and then handed to the Application keeps both."""
    if STARTED_AT not in request:
        begin_new_request(request)


def begin_new_request(request: web.BaseRequest) -> None:
    """`begin_request` for the first code to see a request (the hot path), which need not
    check whether it was begun: that check raises and catches a KeyError inside aiohttp."""
    request[STARTED_AT] = time.perf_counter()
    assign_request_id(request)


def assign_request_id(request: web.BaseRequest) -> str:
    incoming = request.headers.get(X_REQUEST_ID)
    if incoming is None or not _VALID_REQUEST_ID.fullmatch(incoming):
        incoming = _new_request_id()
    request[REQUEST_ID] = incoming
    return incoming


def request_id_for(request: web.BaseRequest) -> str:
    """The request's id: a valid incoming X-Request-Id, else a new one (assigned once)."""
    try:
        return request[REQUEST_ID]
    except KeyError:  # assigned first thing by begin_request, so rarely missing
        return assign_request_id(request)


def elapsed_ms(request: web.BaseRequest) -> float | None:
    """Milliseconds since the request was begun, on `time.perf_counter` (X-Response-Time
    and the access log); None for a request answered before that (an Expect refusal)."""
    started: float | None = request.get(STARTED_AT)
    return None if started is None else (time.perf_counter() - started) * 1000


# -- Every response, every tally -------------------------------------------------------

# The /files/ route's label in metrics (its resource's canonical form).
FILES_ROUTE_LABEL = "/files/{tail}"


class Pipeline:
    """What the settings decide for every answer, worked out once per server: the
    common headers (with `Connection: close` when keep-alive is off) and the tally."""

    __slots__ = ("close_after_response", "traffic")

    def __init__(self, traffic: TrafficTally, *, close_after_response: bool) -> None:
        self.traffic = traffic
        self.close_after_response = close_after_response

    @classmethod
    def for_settings(cls, settings: Settings, traffic: TrafficTally) -> Pipeline:
        # keep-alive 0 means "one request per connection": say so and close after it.
        return cls(traffic, close_after_response=settings.keepalive_timeout == 0)

    def add_common_headers(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        """Request id, response time and nosniff (and `Connection: close` when keep-alive is
        off): set as a response is prepared, or by the hot path as it answers."""
        headers = response.headers
        headers[X_REQUEST_ID] = request_id_for(request)
        elapsed = elapsed_ms(request)
        if elapsed is not None:  # None: answered before being begun (an Expect refusal)
            headers[X_RESPONSE_TIME] = f"{elapsed:.3f}ms"
        headers[X_CONTENT_TYPE_OPTIONS] = "nosniff"
        if self.close_after_response:
            response.force_close()
            headers[hdrs.CONNECTION] = "close"

    async def on_response_prepare(
        self, request: web.BaseRequest, response: web.StreamResponse
    ) -> None:
        """The Application's on_response_prepare step: the common headers, and the started
        response noted for the errors middleware (no error answer once headers are out)."""
        request[STARTED_RESPONSE] = weakref.ref(response)
        self.add_common_headers(request, response)

    def count(
        self,
        request: web.BaseRequest,
        route: str,
        status: int,
        request_bytes: int,
        response: web.StreamResponse | None,
    ) -> None:
        """Tally one answered request: the bytes sent so far if its headers went out, else
        the body it is about to send (a Response not yet written). A /files/ request is
        also a build-cache lookup or write, of the kind its User-Agent names."""
        sent = 0
        if response is not None:
            sent = response.body_length if response.prepared else (response.content_length or 0)
        method = request.method
        traffic = self.traffic
        traffic.count(method_label(method), route, status, request_bytes, sent)
        if route == FILES_ROUTE_LABEL:
            user_agent = request.headers.get(hdrs.USER_AGENT)
            traffic.count_files_cache(method, status, user_agent, request_bytes, sent)

    def finish(self, request: web.BaseRequest, response: web.StreamResponse, route: str) -> None:
        """Everything the Application's middlewares and signals would do for an answer made
        in front of them (the hot path): common headers and tally. A request without a
        body (no Content-Length or Transfer-Encoding) received no bytes."""
        self.add_common_headers(request, response)
        self.count(request, route, response.status, 0, response)


PIPELINE = web.AppKey("pipeline", Pipeline)


# -- The access-log line ---------------------------------------------------------------


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
    request read 0.000 or 1.000ms); it stays the answer for a request refused before it
    was begun."""
    elapsed = elapsed_ms(request)
    return aiohttp_seconds * 1000 if elapsed is None else elapsed


# What a text log line shows of a client's strings as they are: printable ASCII but the
# quote and the backslash that delimit and escape them.
_TAME = re.compile(r"[ !#-\[\]-~]*")


def log_quoted(value: str) -> str:
    """`value` for a text log line: quotes, backslashes, control and non-ASCII characters
    escaped (`\\"`, `\\\\`, `\\xHH`, `\\uHHHH`), so a client's string can neither end its
    field nor forge a line."""
    if _TAME.fullmatch(value):
        return value
    return "".join(c if _TAME.fullmatch(c) else _escaped(c) for c in value)


def _escaped(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def text_log_line(request: web.BaseRequest, response: web.StreamResponse, seconds: float) -> str:
    """The access-log line of one answer, as text; the User-Agent last, quoted."""
    user_agent = request.headers.get(hdrs.USER_AGENT)
    return (
        f"{_clock.now()} {request.remote or '-'} "
        f'"{log_quoted(request.method)} {log_quoted(request.raw_path)}" '
        f"{response.status} {response.body_length} {duration_ms(request, seconds):.3f}ms "
        f"rid={request_id_for(request)} "
        f'ua="{"-" if user_agent is None else log_quoted(user_agent)}"\n'
    )


def json_log_line(request: web.BaseRequest, response: web.StreamResponse, seconds: float) -> str:
    """The access-log line of one answer, as one JSON object."""
    fields = {
        "time": _clock.now(),
        "remote": request.remote or "-",
        "method": request.method,
        "path": request.raw_path,
        "status": response.status,
        "bytes": response.body_length,
        "duration_ms": round(duration_ms(request, seconds), 3),
        "request_id": request_id_for(request),
        "user_agent": request.headers.get(hdrs.USER_AGENT),
    }
    return json.dumps(fields) + "\n"
