"""Hypothesis against real server processes, with aiohttp's C and pure-Python parsers.

Requests go out as raw bytes, so malformed ones get through: methods (known, WebDAV,
invented), paths (encoded, dot segments, internal names, raw UTF-8, long), every query
value and header artifactd reads, bodies framed by Content-Length (right or wrong) or
chunked (well or badly), and multipart forms. Properties, for every request: no 5xx
(but 501, RFC 9112's answer to a transfer coding artifactd does not take), answered or
closed within a bound; and for the run: no traceback on stderr, the server's RSS and its
metric label values bounded.

Bounded for `make test`: 1,000 requests in all (a minute or two), derandomized (the same
examples on every run), no shrinking (a failure prints its example as generated).
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from artifactd.web.pipeline import COUNTED_METHODS, OTHER_METHOD
from tests.serverproc import ServerProcess

pytestmark = [pytest.mark.allow_blocking, pytest.mark.slow, pytest.mark.timeout(900)]

PARSERS = {"c": {"AIOHTTP_NO_EXTENSIONS": ""}, "python": {"AIOHTTP_NO_EXTENSIONS": "1"}}
BODY_TIMEOUT_SECONDS = 1
ANSWER_BOUND_SECONDS = 10.0  # a ?wait of at most 2 s, a body timeout of 1 s, and slack
EXAMPLES = 300  # per parser, of raw requests
MULTIPART_EXAMPLES = 200  # per parser, of multipart POSTs
RSS_GROWTH_BOUND = 64 * 1024 * 1024
# Every route's metrics label (the route templates, and requests no route matched).
ROUTE_LABELS = {
    "/",
    "/files",
    "/files/{tail}",
    "/healthz",
    "/metrics",
    "/api/v1/artifacts",
    "/api/v1/artifacts/{tail}",
    "/api/v1/events",
    "/api/v1/stats",
    "/api/v1/openapi.json",
    "/turbo/v8/artifacts",
    "/turbo/v8/artifacts/status",
    "/turbo/v8/artifacts/events",
    "/turbo/v8/artifacts/{hash}",
    "/nx/v1/cache/{hash}",
    "unmatched",
}
# 501 is RFC 9112 §6.1's answer to a transfer coding the server does not implement.
ALLOWED_5XX = {501}


@dataclass
class Site:
    server: ServerProcess
    parser: str
    rss_before: int


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.M)
    assert match, status
    return int(match.group(1)) * 1024


def build_root(root: Path) -> None:
    (root / "dir").mkdir()
    (root / "dir" / "a.txt").write_bytes(b"hello, fuzz\n" * 200)
    (root / "dir" / "a.txt.gz").write_bytes(b"\x1f\x8b not really gzip")
    (root / "big.bin").write_bytes(bytes(range(256)) * 1024)
    (root / "empty").write_bytes(b"")
    (root / "sp ace é.txt").write_bytes(b"named\n")


@pytest.fixture(scope="module", params=sorted(PARSERS))
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    parser = str(request.param)
    server = start_server(tmp_path_factory.mktemp(f"fuzz-{parser}"), parser)
    try:
        for _ in range(20):  # warm up: imports, caches and pools the first answers fill
            exchange(server.port, b"GET /files/dir/a.txt HTTP/1.0\r\nHost: x\r\n\r\n")
        yield Site(server, parser, rss_bytes(server.proc.pid))
    finally:
        server.terminate()


def start_server(root: Path, parser: str) -> ServerProcess:
    build_root(root)
    return ServerProcess(
        root,
        "--body-timeout",
        f"{BODY_TIMEOUT_SECONDS}s",
        "--keepalive-timeout",
        "5s",
        env=PARSERS[parser],
    )


def assert_no_traceback(server: ServerProcess) -> None:
    stderr = server.stderr()
    assert "Traceback" not in stderr, stderr[-5000:]
    assert "Task exception was never retrieved" not in stderr, stderr[-5000:]


def check_after_run(server: ServerProcess) -> None:
    """Metric label values stay in their closed sets; `/metrics` stays small."""
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as answer:
        text: str = answer.read().decode()
    series = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(series) < 1500, len(series)
    for line in series:
        if line.startswith("artifactd_http_requests_"):
            method = re.search(r'method="([^"]*)"', line)
            route = re.search(r'route="([^"]*)"', line)
            if method:
                assert method.group(1) in COUNTED_METHODS | {OTHER_METHOD}, line
            if route:
                assert route.group(1) in ROUTE_LABELS, line


# -- one exchange -----------------------------------------------------------------------


def exchange(port: int, raw: bytes) -> tuple[int | None, float]:
    """Send `raw`, read until the server closes; the answer's status (None: closed without
    one) and how long it took. Fails if the server neither answers nor closes in time.
    An event stream never ends: for one, the head is enough."""
    target = raw.split(b"\r\n", 1)[0].split(b" ")[1:2]
    stream = bool(target) and target[0].split(b"?")[0] == b"/api/v1/events"
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_BOUND_SECONDS) as sock:
        sock.settimeout(ANSWER_BOUND_SECONDS)
        # Refused mid-body: what it answered, if anything, is still to be read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
                if stream and b"\r\n\r\n" in received:
                    break
                if time.monotonic() - started > ANSWER_BOUND_SECONDS:
                    raise AssertionError(f"still sending after {ANSWER_BOUND_SECONDS}s")
        except ConnectionResetError:
            pass
        except TimeoutError:
            raise AssertionError(
                f"neither answered nor closed in {ANSWER_BOUND_SECONDS}s: {received[:300]!r}"
            ) from None
    elapsed = time.monotonic() - started
    match = re.match(rb"HTTP/1\.[01] (\d{3})", received)
    return (int(match.group(1)) if match else None), elapsed


def check(server: ServerProcess, raw: bytes) -> None:
    try:
        status, _ = exchange(server.port, raw)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nrequest: {raw[:2000]!r}") from None
    assert status is None or status < 500 or status in ALLOWED_5XX, (status, raw[:2000])
    # The server is still there for the next one.
    assert server.proc.poll() is None, server.stderr()[-3000:]


# -- strategies -------------------------------------------------------------------------

TOKEN_CHARS = "!#$%&'*+-.^_`|~ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
# Header values: printable ASCII, tab and some Latin-1 (what parsers may let through).
VALUE_TEXT = st.text(
    alphabet=st.sampled_from([chr(c) for c in range(0x20, 0x7F)] + ["\t", "é", "\xff", "²"]),
    max_size=40,
)
METHODS = [
    *["GET", "GET", "GET", "HEAD", "PUT", "PUT", "POST", "DELETE", "OPTIONS", "PATCH"],
    *["TRACE", "PROPFIND", "MKCOL", "MOVE", "COPY", "get"],
]
methods = st.one_of(
    st.sampled_from(METHODS), st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=12)
)
SEGMENTS = [
    "dir",
    "a.txt",
    "a.txt.gz",
    "big.bin",
    "empty",
    "sp%20ace%20%C3%A9.txt",
    "new.txt",
    ".",
    "..",
    "%2e",
    "%2E%2E",
    "%2f",
    "%5c",
    ".artifactd",
    "%2eartifactd",
    "%00",
    "%0a",
    "%",
    "%zz",
    "a;b",
    "~",
    "\u00e9",
    "x" * 300,
    "",
]
segments = st.one_of(
    st.sampled_from(SEGMENTS),
    st.text(alphabet=TOKEN_CHARS + "%:@=,", min_size=1, max_size=20),
)
PREFIXES = [
    "/files/",
    "/files/",
    "/files/",
    "/files/dir/",
    "/files",
    "/",
    "//files/",
    "/api/v1/artifacts/",
    "/api/v1/artifacts",
    "/api/v1/stats",
    "/api/v1/openapi.json",
    "/api/v1/events",
    "/healthz",
    "/metrics",
    "/turbo/v8/artifacts/",
    "/nx/v1/cache/",
    "/nope/",
]
paths = st.builds(
    lambda prefix, segs, slash: prefix + "/".join(segs) + ("/" if slash else ""),
    st.sampled_from(PREFIXES),
    st.lists(segments, max_size=4),
    st.booleans(),
).map(lambda p: p if len(p) < 6000 else p[:6000])
QUERY_VALUES = {
    # ?wait holds a missing artifact's request: kept short so no request outlives the bound.
    "wait": ["0", "1", "2", "²", "٣", "-1", "301", "1e2", "abc", "", " 1"],
    "ttl": ["1d", "never", "90s", "99999999999999999999999d", "²d", "-1s", "0s", "1y", ""],
    "format": ["json", "html", "xml", ""],
    "sort": ["name", "size", "modified", "x"],
    "order": ["asc", "desc", "x"],
    "prefix": ["dir/", "", "..", "%00", "é"],
    "limit": ["1", "1000", "1001", "0", "²", "-5", "x"],
    "cursor": ["ZGly", "!!!", "", "=", "ZGlyL2EudHh0"],
    "last_event_id": ["1", "²", "-1", "99999999999999999999999"],
}
query_items = st.sampled_from(sorted(QUERY_VALUES)).flatmap(
    lambda key: st.tuples(
        st.just(key), st.one_of(st.sampled_from(QUERY_VALUES[key]), VALUE_TEXT.map(_quote))
    )
)
HEADER_VALUES = {
    "Range": [
        "bytes=0-0",
        "bytes=-1",
        "bytes=5-",
        "bytes=0-1,3-4,2-9",
        "bytes=1-0",
        "bytes=99999999999999999999-",
        "bytes=²-3",
        "items=0-1",
        "bytes=",
        "bytes=-0",
        "bytes=0-1," * 40 + "0-1",
    ],
    "If-Range": ['"x"', "Sat, 05 Dec 2026 10:00:00 GMT", "garbage", 'W/"x"'],
    "If-Match": ["*", '"x"', 'W/"x"', '"a", "b"', ""],
    "If-None-Match": ["*", '"x"', 'W/"x"', ""],
    "If-Modified-Since": [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "garbage",
        "Sat, 05 Dec 9999 10:00:00 GMT",
    ],
    "If-Unmodified-Since": ["Sun, 06 Nov 1994 08:49:37 GMT", "garbage"],
    "Accept": ["application/json", "text/html", "*/*;q=0", "text/html;q=abc", ""],
    "Accept-Encoding": ["gzip", "gzip;q=0", "br, gzip;q=0.5", "identity;q=0", "*", "gzip;q=x"],
    "Want-Digest": ["SHA-256", "sha-256;q=0.3, md5", "sha-512", "x;q=y", ""],
    "Want-Repr-Digest": ["sha-256=1", "sha-256=x", "md5=1"],
    "X-Artifact-TTL": ["1d", "never", "99999999999999999999999d", "²d", "-1s", "0s", "1y"],
    "Authorization": [
        "Bearer x",
        "Basic !!!",
        "Basic " + base64.b64encode(b":x").decode(),
        "Bearer ",
        "Digest x",
        "Basic " + base64.b64encode(b"\xff\xfe").decode(),
    ],
    "Expect": ["100-continue", "100-Continue", "foo"],
    "X-Request-Id": ["abc", "x" * 200, "a b", "é"],
    "Last-Event-ID": ["1", "²", "-1", "99999999999999999999999", ""],
    "X-Checksum-Sha256": ["0" * 64, "zz", ""],
    "Repr-Digest": ["sha-256=:AAAA:", "sha-256=x", ""],
    "Digest": ["SHA-256=AAAA", "SHA-256=!!", "md5=x"],
    "Content-Type": ["application/octet-stream", "text/plain; charset=x", "multipart/form-data"],
    "Upload-Complete": ["?1", "?0", "x"],
}
headers = st.lists(
    st.sampled_from(sorted(HEADER_VALUES)).flatmap(
        lambda name: st.tuples(
            st.just(name), st.one_of(st.sampled_from(HEADER_VALUES[name]), VALUE_TEXT)
        )
    ),
    max_size=5,
)


def _quote(text: str) -> str:
    """A query value as a client would encode it: anything but unreserved characters."""
    return "".join(
        c
        if c.isascii() and (c.isalnum() or c in "-._~")
        else "".join(f"%{b:02X}" for b in c.encode())
        for c in text
    )


def _chunked(body: bytes, style: str) -> bytes:
    if style == "good":
        return (b"%x\r\n" % len(body) + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    if style == "bad-size":
        return b"zz\r\n" + body + b"\r\n0\r\n\r\n"
    if style == "huge-size":
        return b"ffffffffffffffffffff\r\n" + body + b"\r\n0\r\n\r\n"
    if style == "no-end":  # the final chunk never comes: the body timeout ends it
        return b"%x\r\n" % len(body) + body + b"\r\n"
    if style == "extension":
        return b"%x;name=value\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    return b"%x\r\n" % (len(body) + 5) + body + b"\r\n0\r\n\r\n"  # a chunk longer than sent


@dataclass(frozen=True)
class Framing:
    kind: str  # none, length, length-short, length-long, length-bad, chunked, both
    chunk_style: str = "good"


# Framings the server must wait out (a body shorter than declared, a chunked body that
# never ends) cost a body timeout each: kept to about one request in eight.
FRAMINGS = [
    *[Framing("length")] * 8,
    *[Framing("none")] * 3,
    Framing("length-short"),
    Framing("length-bad"),
    Framing("both"),
    *[Framing("chunked", "good")] * 3,
    Framing("chunked", "bad-size"),
    Framing("chunked", "huge-size"),
    Framing("chunked", "extension"),
    Framing("length-long"),
    Framing("chunked", "no-end"),
    Framing("chunked", "short"),
]
framings = st.sampled_from(FRAMINGS)


def frame(body: bytes, framing: Framing) -> tuple[list[str], bytes]:
    """The framing headers and the bytes sent after the head."""
    if framing.kind == "none":
        return [], b""
    if framing.kind == "length":
        return [f"Content-Length: {len(body)}"], body
    if framing.kind == "length-short":  # more bytes than declared: the rest is a next request
        return [f"Content-Length: {max(0, len(body) - 3)}"], body
    if framing.kind == "length-long":  # fewer than declared: the body timeout ends it
        return [f"Content-Length: {len(body) + 3}"], body
    if framing.kind == "length-bad":
        return ["Content-Length: 1x"], body
    if framing.kind == "both":
        return [f"Content-Length: {len(body)}", "Transfer-Encoding: chunked"], body
    return ["Transfer-Encoding: chunked"], _chunked(body, framing.chunk_style)


def build_request(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    header_list: list[tuple[str, str]],
    head_extra: list[str],
    payload: bytes,
    version: str,
) -> bytes:
    target = path + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")
    lines = [f"{method} {target} HTTP/{version}", "Host: artifactd.test"]
    lines += [f"{name}: {value}" for name, value in header_list]
    lines += head_extra
    lines.append("Connection: close")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + payload


requests = st.builds(
    lambda method, path, query, header_list, body, framing, version: build_request(
        method, path, query, header_list, *frame(body, framing), version
    ),
    methods,
    paths,
    st.lists(query_items, max_size=3),
    headers,
    st.binary(max_size=300),
    framings,
    st.sampled_from(["1.1", "1.1", "1.1", "1.0"]),
)

# -- multipart ---------------------------------------------------------------------------

BOUNDARIES = ["b0undary", "x" * 70, "x" * 71, "", "a b", "é", "--", 'b"q']


@st.composite
def multipart_requests(draw: st.DrawFn) -> bytes:
    boundary = draw(st.one_of(st.sampled_from(BOUNDARIES), st.text(TOKEN_CHARS, max_size=20)))
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["file", "ttl", "other", "", 'fi"le']))
        filename = draw(
            st.sampled_from(["a.bin", "", None, "../up.txt", "x\x00y", "é.txt", "dir/b.txt"])
        )
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        part_headers = [f"Content-Disposition: {disposition}"]
        part_headers += draw(
            st.lists(
                st.sampled_from(
                    [
                        "Content-Type: text/plain; charset=foo",
                        "Content-Type: multipart/mixed; boundary=inner",
                        "Content-Type: application/octet-stream",
                        "X-Long: " + "y" * 9000,
                        "no colon here",
                        "Content-Transfer-Encoding: base64",
                    ]
                ),
                max_size=2,
            )
        )
        content = draw(st.one_of(st.binary(max_size=200), st.sampled_from([b"1d", b"\xff\xfe"])))
        ending = draw(st.sampled_from(["\r\n\r\n", "\r\n\r\n", "\r\n"]))  # headers unended
        parts.append(
            f"--{boundary}\r\n".encode()
            + "\r\n".join(part_headers).encode("utf-8", "surrogateescape")
            + ending.encode()
            + content
            + b"\r\n"
        )
    closing = draw(st.sampled_from([f"--{boundary}--\r\n", f"--{boundary}--\r\n", "", "--wrong--"]))
    body = b"".join(parts) + closing.encode("utf-8", "surrogateescape")
    if draw(st.booleans()):
        body = draw(st.sampled_from([b"", b"garbage", b"--" + b"z" * 80])) + body
    content_type = draw(
        st.sampled_from(
            [
                f"multipart/form-data; boundary={boundary}",
                f'multipart/form-data; boundary="{boundary}"',
                "multipart/form-data",
                "multipart/form-data; boundary=",
                f"multipart/mixed; boundary={boundary}",
            ]
        )
    )
    framing = draw(st.sampled_from([Framing("length"), Framing("length"), Framing("chunked")]))
    path = draw(st.sampled_from(["/files/up/", "/files/", "/files/dir/a.txt", "/files/up"]))
    query = draw(st.lists(query_items.filter(lambda kv: kv[0] == "ttl"), max_size=1))
    head_extra, payload = frame(body, framing)
    return build_request(
        "POST", path, query, [("Content-Type", content_type)], head_extra, payload, "1.1"
    )


# -- the tests ---------------------------------------------------------------------------

FUZZ_SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@settings(FUZZ_SETTINGS, max_examples=EXAMPLES)
@given(raw=requests)
def test_requests(site: Site, raw: bytes) -> None:
    check(site.server, raw)


def test_after_the_run(site: Site) -> None:
    """On the server the fuzz test just used: no traceback, RSS and metrics bounded."""
    assert_no_traceback(site.server)
    answered = sum(" rid=" in line for line in site.server.stderr_lines)
    assert answered > EXAMPLES // 2, answered  # the examples did reach the server
    grown = rss_bytes(site.server.proc.pid) - site.rss_before
    assert grown < RSS_GROWTH_BOUND, f"RSS grew by {grown / 2**20:.1f} MiB"
    check_after_run(site.server)


@pytest.mark.parametrize("parser", sorted(PARSERS))
def test_multipart_posts(tmp_path: Path, parser: str) -> None:
    server = start_server(tmp_path, parser)
    try:

        @settings(FUZZ_SETTINGS, max_examples=MULTIPART_EXAMPLES)
        @given(raw=multipart_requests())
        def post(raw: bytes) -> None:
            check(server, raw)

        post()
        assert_no_traceback(server)
    finally:
        server.terminate()
