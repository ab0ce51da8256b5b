"""Hostile input against a real server process, with aiohttp's C and pure-Python parsers.

Requests go out as raw bytes over sockets: HTTP clients normalise URLs and framing, which is
exactly what these tests must not do. Every case checks that the answer is a clear 4xx,
that the server keeps serving, and that nothing outside the storage root is read or written.
Answers produced by aiohttp's parser before the application runs (malformed framing, huge
heads) are plain-text 400s without artifactd's headers; SECURITY.md says why.
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess

pytestmark = pytest.mark.allow_blocking

# AIOHTTP_NO_EXTENSIONS="" counts as unset: the C parser even if the tests run with it set.
PARSERS = {"c": {"AIOHTTP_NO_EXTENSIONS": ""}, "python": {"AIOHTTP_NO_EXTENSIONS": "1"}}
SECRET = b"TOP-SECRET-" + uuid.uuid4().hex.encode()
BIG_SIZE = 100_000
BIG = random.Random(4).randbytes(BIG_SIZE)
A_TXT = b"hello from dir\n"
VICTIM = b"victim\n" * 100
FRAMING_SLACK = 2048  # multipart boundaries and part headers, never another copy of the file
BODY_TIMEOUT = 2  # --body-timeout of the servers here, seconds


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes
    raw: bytes

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class Site:
    """A running server and the directory around its root."""

    server: ServerProcess
    parser: str
    base: Path  # root/, secret.txt and canary/
    root: Path
    secret: Path
    canary: Path
    secret_stat: tuple[int, int]


def build_site(base: Path) -> tuple[Path, Path, Path]:
    root, secret, canary = base / "root", base / "secret.txt", base / "canary"
    root.mkdir()
    canary.mkdir()
    secret.write_bytes(SECRET)
    (root / "dir").mkdir()
    (root / "dir" / "a.txt").write_bytes(A_TXT)
    (root / "victim.bin").write_bytes(VICTIM)
    (root / "big.bin").write_bytes(BIG)
    os.symlink(secret, root / "escape")  # a file link leaving the root
    os.symlink(base, root / "escape_dir")  # a directory link leaving it (holds secret.txt)
    os.symlink(canary, root / "canary_link")  # a way out to write through, if there were one
    return root, secret, canary


@pytest.fixture(scope="module", params=sorted(PARSERS))
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    parser = str(request.param)
    base = tmp_path_factory.mktemp(f"hostile-{parser}")
    root, secret, canary = build_site(base)
    server = ServerProcess(root, "--body-timeout", f"{BODY_TIMEOUT}s", env=PARSERS[parser])
    st = secret.stat()
    try:
        yield Site(server, parser, base, root, secret, canary, (st.st_size, st.st_mtime_ns))
    finally:
        server.kill()
    assert "Traceback" not in server.stderr(), server.stderr()[-5000:]


# -- raw HTTP -------------------------------------------------------------------------------


def request(
    method: str,
    target: bytes | str,
    *headers: str,
    body: bytes = b"",
    host: str = "artifactd.test",
    close: bool = True,
) -> bytes:
    """One request as bytes; a Content-Length is added for a body unless a header frames it."""
    target_bytes = target.encode() if isinstance(target, str) else target
    lines = [f"Host: {host}", *headers]
    framed = any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers)
    if body and not framed:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    head = method.encode() + b" " + target_bytes + b" HTTP/1.1\r\n"
    return head + "".join(f"{line}\r\n" for line in lines).encode() + b"\r\n" + body


def read_answer(sock: socket.socket, *, head: bool = False, timeout: float = 15.0) -> Answer:
    """Read one response: its head, then Content-Length bytes (or up to EOF without one)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed without an answer (got {data[:200]!r})")
        data += chunk
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    no_body = head or status in (204, 304)
    length = 0 if no_body else int(headers.get("content-length", "-1"))
    while length < 0 or len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    body = rest if length < 0 else rest[:length]
    return Answer(status, headers, body, head_bytes + b"\r\n\r\n" + body)


def exchange(port: int, raw: bytes, *, head: bool = False, timeout: float = 15.0) -> Answer:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        return read_answer(sock, head=head, timeout=timeout)


def by_artifactd(answer: Answer) -> bool:
    """artifactd's own answers carry its headers; aiohttp's parser errors do not."""
    return "x-request-id" in answer.headers


def assert_json_error(answer: Answer, *, head: bool = False) -> None:
    assert answer.headers.get("x-content-type-options") == "nosniff"
    assert answer.headers["content-type"].startswith("application/json")
    if not head:
        document = answer.json()
        assert isinstance(document, dict)
        assert set(document) == {"error", "status"}
        assert document["status"] == answer.status
        assert isinstance(document["error"], str) and document["error"]


def assert_refused(
    answer: Answer, status: int, *, head: bool = False, parser_may_refuse: bool = False
) -> None:
    """A clear refusal: artifactd's JSON error with `status`, or (where allowed) aiohttp's
    parser's plain 400, which never carries a traceback."""
    assert SECRET not in answer.raw
    if by_artifactd(answer):
        assert answer.status == status, answer
        assert_json_error(answer, head=head)
    else:
        assert parser_may_refuse, f"refused by aiohttp's parser, not by artifactd: {answer}"
        assert answer.status == 400, answer
        assert b"Traceback" not in answer.body


def assert_still_serving(site: Site) -> None:
    answer = exchange(site.server.port, request("GET", "/healthz"))
    assert (answer.status, answer.body) == (200, b"ok")


def assert_outside_untouched(site: Site) -> None:
    assert sorted(os.listdir(site.base)) == ["canary", "root", "secret.txt"]
    assert os.listdir(site.canary) == []
    st = site.secret.stat()
    assert (st.st_size, st.st_mtime_ns) == site.secret_stat
    assert site.secret.read_bytes() == SECRET


def root_snapshot(root: Path) -> set[str]:
    """Everything under the root but its internal state (links are not followed)."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d != ".artifactd"]
        found.update(os.path.normpath(os.path.join(rel, n)) for n in dirnames + filenames)
    return found


# -- the parser under test ------------------------------------------------------------------


def test_the_server_runs_the_parser_asked_for(site: Site) -> None:
    """Raw invalid UTF-8 in the target: llhttp refuses it itself, the Python parser passes
    it on to artifactd. This proves each parametrisation really exercises its parser."""
    answer = exchange(site.server.port, request("GET", b"/files/\xff"))
    assert answer.status == 400
    assert by_artifactd(answer) == (site.parser == "python")


# -- paths: traversal, encodings, symlinks, internal state -----------------------------------

# (id, raw path after /files/, status, whether aiohttp's parser may refuse it first)
TRAVERSAL: list[tuple[str, bytes, int, bool]] = [
    ("dotdot", b"../x", 400, False),
    ("dotdot-secret", b"../secret.txt", 400, False),
    ("deep-dotdot", b"dir/../../secret.txt", 400, False),
    ("enc-dotdot", b"%2e%2e/x", 400, False),
    ("enc-DOTDOT", b"%2E%2E/x", 400, False),
    ("half-enc-dotdot", b".%2E/secret.txt", 400, False),
    ("dot-then-dotdot", b"./../secret.txt", 400, False),
    ("enc-dot-then-dotdot", b"dir/%2e/%2E%2e/secret.txt", 400, False),
    ("double-enc-dot", b"%252e/dir/a.txt", 400, False),
    ("enc-slash", b"..%2fx", 400, False),
    ("enc-slash-secret", b"..%2F..%2Fsecret.txt", 400, False),
    ("double-enc", b"%252e%252e/x", 400, False),
    ("double-enc-slash", b"%252e%252e%252fsecret.txt", 400, False),
    ("backslash", b"a\\b", 400, False),
    ("backslash-dotdot", b"..\\secret.txt", 400, False),
    ("enc-backslash", b"a%5cb", 400, False),
    ("enc-backslash-dotdot", b"..%5Csecret.txt", 400, False),
    ("nul", b"a%00b", 400, False),
    ("cr", b"a%0db", 400, False),
    ("crlf", b"a%0d%0aSet-Cookie:x", 400, False),
    ("tab", b"a%09b", 400, False),
    ("del", b"a%7fb", 400, False),
    ("absolute", b"/etc/passwd", 400, False),
    ("overlong-utf8", b"%c0%ae%c0%ae/secret.txt", 400, False),
    ("invalid-utf8", b"%ff", 400, False),
    ("raw-invalid-utf8", b"\xff", 400, True),
    ("raw-overlong-utf8", b"\xc0\xae\xc0\xae/secret.txt", 400, True),
    ("symlink-to-file-outside", b"escape", 400, False),
    ("symlink-to-dir-outside", b"escape_dir", 400, False),
    ("through-symlink-outside", b"escape_dir/secret.txt", 400, False),
    ("write-through-symlink", b"canary_link/new.txt", 400, False),
    ("internal-db", b".artifactd/metadata.db", 404, False),
    ("internal-enc", b"%2eartifactd/metadata.db", 404, False),
    ("internal-tmp", b".artifactd/tmp", 404, False),
    ("internal-dir", b".artifactd", 404, False),
]
METHODS = ["GET", "HEAD", "PUT", "DELETE", "LIST"]
TRAVERSAL_MARKS: dict[str, pytest.MarkDecorator] = {}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("tail", "status", "parser_may_refuse"),
    [
        pytest.param(tail, status, p, id=name, marks=TRAVERSAL_MARKS.get(name, ()))
        for name, tail, status, p in TRAVERSAL
    ],
)
def test_path_attacks_are_refused(
    site: Site, method: str, tail: bytes, status: int, parser_may_refuse: bool
) -> None:
    before = root_snapshot(site.root)
    target = b"/files/" + tail
    if method == "LIST":
        raw = request("GET", target + b"/", "Accept: application/json")
    elif method == "PUT":
        raw = request("PUT", target, body=b"pwned " + SECRET[:4])
    else:
        raw = request(method, target)
    answer = exchange(site.server.port, raw, head=method == "HEAD")
    assert_refused(answer, status, head=method == "HEAD", parser_may_refuse=parser_may_refuse)
    assert root_snapshot(site.root) == before
    assert_outside_untouched(site)
    assert_still_serving(site)


def test_hidden_links_and_internal_state_are_not_listed(site: Site) -> None:
    answer = exchange(site.server.port, request("GET", "/files/?format=json"))
    assert answer.status == 200
    listing = answer.json()
    assert isinstance(listing, dict)
    names = {entry["name"] for entry in listing["entries"]}
    assert names == {"dir", "victim.bin", "big.bin"}  # no .artifactd, no links leaving
    html = exchange(site.server.port, request("GET", "/files/", "Accept: text/html"))
    assert html.status == 200
    assert b".artifactd" not in html.body and b"escape" not in html.body
    assert SECRET not in html.raw


# -- heads: size limits ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            request("GET", "/files/dir/a.txt", "X-Big: " + "a" * 100_000), id="100k-header"
        ),
        pytest.param(
            request("GET", "/files/dir/a.txt", *(f"X-H{i}: v" for i in range(300))),
            id="300-headers",
        ),
        pytest.param(request("GET", "/files/" + "a" * 10_000), id="10k-target"),
        pytest.param(
            request("GET", "/files/dir/a.txt", "Cookie: " + "c=" + "x" * 9000), id="9k-cookie"
        ),
    ],
)
def test_oversized_heads_are_refused_and_the_server_keeps_serving(site: Site, raw: bytes) -> None:
    started = time.monotonic()
    answer = exchange(site.server.port, raw)
    assert time.monotonic() - started < 5
    assert answer.status in (400, 414, 431)
    assert b"Traceback" not in answer.body
    assert_still_serving(site)


# -- ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "status", "body"),
    [
        pytest.param(",".join(["0-"] * 1000), 200, BIG, id="1000-whole-file"),
        pytest.param(",".join(f"{i}-{i}" for i in range(1000)), 200, BIG, id="1000-bytes"),
        pytest.param(",".join([f"-{BIG_SIZE}"] * 1000), 200, BIG, id="1000-suffixes"),
        pytest.param(",".join(["0-"] * 16), 206, BIG, id="16-overlapping"),
        pytest.param("0-60000,100-99999,50-70", 206, BIG, id="overlapping-mix"),
        pytest.param(",".join(["5-5"] * 16), 206, BIG[5:6], id="16-same-byte"),
        pytest.param(",".join(["-1"] * 16), 206, BIG[-1:], id="16-same-suffix"),
    ],
)
def test_many_and_overlapping_ranges_are_never_amplified(
    site: Site, spec: str, status: int, body: bytes
) -> None:
    started = time.monotonic()
    answer = exchange(site.server.port, request("GET", "/files/big.bin", f"Range: bytes={spec}"))
    assert time.monotonic() - started < 5
    assert answer.status == status
    assert answer.body == body  # one part: coalesced, never the file twice
    assert len(answer.body) <= BIG_SIZE + FRAMING_SLACK
    assert_still_serving(site)


def test_disjoint_ranges_add_up_to_at_most_the_file(site: Site) -> None:
    spec = ",".join(f"{i * 6000}-{i * 6000 + 5999}" for i in range(16))  # 16 parts, 96000 B
    answer = exchange(site.server.port, request("GET", "/files/big.bin", f"Range: bytes={spec}"))
    assert answer.status == 206
    assert answer.headers["content-type"].startswith("multipart/byteranges")
    assert len(answer.body) <= BIG_SIZE + FRAMING_SLACK


@pytest.mark.parametrize(
    ("spec", "status", "content_range"),
    [
        ("0-18446744073709551616", 206, f"bytes 0-{BIG_SIZE - 1}/{BIG_SIZE}"),
        ("0-18446744073709551615", 206, f"bytes 0-{BIG_SIZE - 1}/{BIG_SIZE}"),
        ("-9223372036854775808", 206, f"bytes 0-{BIG_SIZE - 1}/{BIG_SIZE}"),
        ("-18446744073709551617", 206, f"bytes 0-{BIG_SIZE - 1}/{BIG_SIZE}"),
        ("99990-9223372036854775808", 206, f"bytes 99990-{BIG_SIZE - 1}/{BIG_SIZE}"),
        ("0-" + "9" * 5000, 206, f"bytes 0-{BIG_SIZE - 1}/{BIG_SIZE}"),
        ("-" + "9" * 5000, 206, f"bytes 0-{BIG_SIZE - 1}/{BIG_SIZE}"),
        ("18446744073709551616-", 416, f"bytes */{BIG_SIZE}"),
        ("9223372036854775807-9223372036854775808", 416, f"bytes */{BIG_SIZE}"),
        ("9" * 5000 + "-", 416, f"bytes */{BIG_SIZE}"),
        ("-0", 416, f"bytes */{BIG_SIZE}"),
    ],
    ids=lambda v: v if len(str(v)) < 40 else f"{str(v)[:12]}...({len(str(v))})",
)
def test_integer_overflow_ranges(site: Site, spec: str, status: int, content_range: str) -> None:
    started = time.monotonic()
    answer = exchange(site.server.port, request("GET", "/files/big.bin", f"Range: bytes={spec}"))
    assert time.monotonic() - started < 5
    assert answer.status == status
    assert answer.headers["content-range"] == content_range
    if status == 416:
        assert_json_error(answer)
    else:
        start = int(content_range.split()[1].split("-")[0])
        assert answer.body == BIG[start:]
    assert_still_serving(site)


# -- message framing ------------------------------------------------------------------------

CHUNKED_ABC = b"3\r\nabc\r\n0\r\n\r\n"
# (id, framing headers, body, status, whether aiohttp's parser may refuse it first)
FRAMING: list[tuple[str, list[str], bytes, int, bool]] = [
    ("cl-and-te", ["Content-Length: 3", "Transfer-Encoding: chunked"], CHUNKED_ABC, 400, True),
    ("te-and-cl", ["Transfer-Encoding: chunked", "Content-Length: 3"], CHUNKED_ABC, 400, True),
    ("two-lengths", ["Content-Length: 3", "Content-Length: 4"], b"abcd", 400, True),
    ("same-length-twice", ["Content-Length: 3", "Content-Length: 3"], b"abc", 400, True),
    ("length-list", ["Content-Length: 3, 3"], b"abc", 400, True),
    ("negative-length", ["Content-Length: -3"], b"abc", 400, True),
    ("signed-length", ["Content-Length: +3"], b"abc", 400, True),
    ("hex-length", ["Content-Length: 0x3"], b"abc", 400, True),
    ("word-length", ["Content-Length: three"], b"abc", 400, True),
    ("spaced-length", ["Content-Length: 3 3"], b"abc", 400, True),
    ("space-before-colon", ["Content-Length : 3"], b"abc", 400, True),
    ("length-2**64", ["Content-Length: 18446744073709551616"], b"abc", 400, True),
    ("length-30-digits", ["Content-Length: " + "9" * 30], b"abc", 400, True),
    ("length-5000-digits", ["Content-Length: " + "9" * 5000], b"abc", 400, True),
    (
        "te-twice",
        ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
        CHUNKED_ABC,
        400,
        True,
    ),
    ("te-chunked-then-gzip", ["Transfer-Encoding: chunked, gzip"], CHUNKED_ABC, 400, True),
    ("te-identity", ["Transfer-Encoding: identity"], b"abc", 400, True),
    ("te-unknown", ["Transfer-Encoding: xchunked"], CHUNKED_ABC, 400, True),
    ("te-gzip-then-chunked", ["Transfer-Encoding: gzip, chunked"], CHUNKED_ABC, 501, False),
    ("chunk-size-negative", ["Transfer-Encoding: chunked"], b"-3\r\nabc\r\n0\r\n\r\n", 400, True),
    ("chunk-size-not-hex", ["Transfer-Encoding: chunked"], b"zz\r\nabc\r\n0\r\n\r\n", 400, True),
    # llhttp refuses the overflow at once; the Python parser waits for 2**96 bytes, and the
    # upload's --body-timeout answers 400.
    ("chunk-size-overflow", ["Transfer-Encoding: chunked"], b"f" * 24 + b"\r\nabc", 400, True),
    (
        "undecodable-gzip-body",
        ["Content-Encoding: gzip", "Content-Length: 10"],
        b"notgzipxxx",
        400,
        False,
    ),
]


@pytest.mark.parametrize(
    ("headers", "body", "status", "parser_may_refuse"),
    [pytest.param(h, b, s, p, id=name) for name, h, b, s, p in FRAMING],
)
def test_bad_framing_is_refused_and_stores_nothing(
    site: Site, headers: list[str], body: bytes, status: int, parser_may_refuse: bool
) -> None:
    path = f"/files/framing/{uuid.uuid4().hex}"
    started = time.monotonic()
    answer = exchange(site.server.port, request("PUT", path, *headers, body=body))
    assert time.monotonic() - started < BODY_TIMEOUT + 5
    assert_refused(answer, status, parser_may_refuse=parser_may_refuse)
    assert exchange(site.server.port, request("GET", path)).status == 404
    assert_still_serving(site)


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param("Content-Length: 5\r\nTransfer-Encoding: chunked", id="cl-te"),
        pytest.param("Transfer-Encoding: chunked\r\nContent-Length: 5", id="te-cl"),
        pytest.param("Transfer-Encoding: gzip, chunked", id="te-gzip-chunked"),
        pytest.param("Content-Length: 5\r\nContent-Length: 60", id="cl-cl"),
    ],
)
def test_a_smuggled_request_is_never_executed(site: Site, framing: str) -> None:
    smuggled = b"DELETE /files/victim.bin HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = (
        f"PUT /files/smuggle HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n".encode()
        + b"0\r\n\r\n"
        + smuggled
    )
    with socket.create_connection(("127.0.0.1", site.server.port), timeout=15) as sock:
        sock.sendall(raw)
        sock.settimeout(15)
        received = b""
        while chunk := sock.recv(65536):  # the server closes after its one answer
            received += chunk
    assert received.count(b"HTTP/1.") == 1, received
    assert int(received.split(b" ", 2)[1]) in (400, 501)
    victim = exchange(site.server.port, request("GET", "/files/victim.bin"))
    assert (victim.status, victim.body) == (200, VICTIM)
    assert exchange(site.server.port, request("GET", "/files/smuggle")).status == 404


# -- methods and request targets ------------------------------------------------------------


# OPTIONS, PROPFIND, MKCOL, COPY and MOVE are WebDAV's (tests/web/test_dav.py); LOCK and
# PROPPATCH are WebDAV methods artifactd does not serve (class 1, read-only properties).
@pytest.mark.parametrize("method", ["PATCH", "TRACE", "LOCK", "PROPPATCH", "UNLOCK"])
def test_methods_without_a_route_get_405_with_allow(site: Site, method: str) -> None:
    answer = exchange(site.server.port, request(method, "/files/dir/a.txt"))
    assert_refused(answer, 405)
    allowed = {m.strip() for m in answer.headers["allow"].split(",")}
    assert {"GET", "HEAD", "PUT", "DELETE"} <= allowed
    assert_still_serving(site)


def test_an_unknown_method_token(site: Site) -> None:
    """llhttp only knows a fixed table of methods and refuses any other token itself (400,
    before artifactd runs); the Python parser passes it on and the router answers 405."""
    answer = exchange(site.server.port, request("BREW", "/files/dir/a.txt"))
    if site.parser == "python":
        assert_refused(answer, 405)
        assert "GET" in answer.headers["allow"]
    else:
        assert_refused(answer, 405, parser_may_refuse=True)
    assert_still_serving(site)


def test_absolute_form_targets_serve_this_root_only(site: Site) -> None:
    port = site.server.port
    answer = exchange(port, request("GET", "http://evil.example/files/dir/a.txt"))
    assert (answer.status, answer.body) == (200, A_TXT)
    escape = exchange(port, request("GET", "http://evil.example/files/../secret.txt"))
    assert_refused(escape, 400)
    escape = exchange(port, request("GET", "http://evil.example/files/%2e%2e/secret.txt"))
    assert_refused(escape, 400)
    assert_outside_untouched(site)


@pytest.mark.parametrize(
    ("target", "headers", "location"),
    [
        ("/files/dir", ["X-Forwarded-Host: evil.example"], "/files/dir/"),
        ("/files/dir?next=//evil.example/", [], "/files/dir/"),
        ("http://evil.example/files/dir", [], "/files/dir/"),
        ("/", ["X-Forwarded-Proto: https"], "/files/"),
        ("/files", [], "/files/"),
    ],
)
def test_redirects_never_leave_the_host(
    site: Site, target: str, headers: list[str], location: str
) -> None:
    answer = exchange(site.server.port, request("GET", target, *headers, host="evil.example"))
    assert answer.status == 301
    assert answer.headers["location"] == location


@pytest.mark.parametrize(
    "target", ["//evil.example/files/dir", "//evil.example/", "/files//evil.example/"]
)
def test_protocol_relative_targets_do_not_redirect_away(site: Site, target: str) -> None:
    answer = exchange(site.server.port, request("GET", target, host="evil.example"))
    assert 400 <= answer.status < 500
    assert "evil" not in answer.headers.get("location", "")


# -- slow and idle clients ------------------------------------------------------------------

KEEPALIVE = 3.0  # --keepalive-timeout of the servers below, seconds


def dribbling_site(base: Path, parser: str, *flags: str) -> Site:
    root, secret, canary = build_site(base)
    server = ServerProcess(root, *flags, env=PARSERS[parser])
    st = secret.stat()
    return Site(server, parser, base, root, secret, canary, (st.st_size, st.st_mtime_ns))


@pytest.fixture(params=sorted(PARSERS))
def short_keepalive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    site = dribbling_site(tmp_path, str(request.param), "--keepalive-timeout", f"{KEEPALIVE:g}s")
    try:
        yield site
    finally:
        site.server.kill()
    assert "Traceback" not in site.server.stderr()


def dribble(
    site: Site, sockets: list[socket.socket], seconds_per_byte: float, limit: float
) -> dict[int, float]:
    """Send each socket's request head one byte at a time until the server drops them;
    meanwhile ordinary requests must be answered quickly. Returns when each was dropped."""
    head = b"GET /files/dir/a.txt HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 200
    dropped: dict[int, float] = {}
    started = time.monotonic()
    for sock in sockets:
        sock.setblocking(False)
    sent = 0
    while len(dropped) < len(sockets) and time.monotonic() - started < limit:
        tick = time.monotonic()
        for i, sock in enumerate(sockets):
            if i in dropped:
                continue
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                data = None
            except OSError:
                data = b""
            if data is not None:
                assert data == b"", f"a request head that never ended was answered: {data!r}"
                dropped[i] = time.monotonic() - started
                continue
            try:
                sock.send(head[sent : sent + 1])
            except OSError:
                dropped[i] = time.monotonic() - started
        sent += 1
        quick = time.monotonic()
        answer = exchange(site.server.port, request("GET", "/files/dir/a.txt"), timeout=5)
        assert (answer.status, answer.body) == (200, A_TXT)
        assert time.monotonic() - quick < 2.0, "slow clients held up an ordinary request"
        time.sleep(max(0.0, seconds_per_byte - (time.monotonic() - tick)))
    return dropped


def test_slowloris_clients_do_not_stall_others_and_are_cut_off(short_keepalive: Site) -> None:
    sockets = [
        socket.create_connection(("127.0.0.1", short_keepalive.server.port)) for _ in range(25)
    ]
    try:
        dropped = dribble(short_keepalive, sockets, seconds_per_byte=1.0, limit=KEEPALIVE + 10)
    finally:
        for sock in sockets:
            sock.close()
    assert len(dropped) == len(sockets), "a slowloris client was never disconnected"
    assert all(KEEPALIVE - 1 <= t <= KEEPALIVE + 3 for t in dropped.values()), dropped
    assert_still_serving(short_keepalive)


def test_idle_keepalive_connections_are_closed_after_the_timeout(short_keepalive: Site) -> None:
    with socket.create_connection(("127.0.0.1", short_keepalive.server.port)) as sock:
        for _ in range(2):  # the connection really is kept alive between requests
            sock.sendall(request("GET", "/files/dir/a.txt", close=False))
            answer = read_answer(sock)
            assert (answer.status, answer.body) == (200, A_TXT)
            assert answer.headers.get("connection", "").lower() != "close"
        idle_since = time.monotonic()
        sock.settimeout(KEEPALIVE - 1.5)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # still open well before the timeout
        sock.settimeout(KEEPALIVE + 5)
        assert sock.recv(1) == b""
        idle = time.monotonic() - idle_since
    assert KEEPALIVE - 0.5 <= idle <= KEEPALIVE + 3, idle


@pytest.mark.parametrize("parser", sorted(PARSERS))
def test_without_keepalive_slow_heads_are_still_cut_off(tmp_path: Path, parser: str) -> None:
    """aiohttp arms no timer at all with a keep-alive timeout of 0; artifactd then gives a
    request head --body-timeout and closes each connection after its answer."""
    site = dribbling_site(
        tmp_path, parser, "--keepalive-timeout", "0", "--body-timeout", f"{BODY_TIMEOUT}s"
    )
    try:
        with socket.create_connection(("127.0.0.1", site.server.port)) as sock:
            sock.sendall(request("GET", "/files/dir/a.txt", close=False))
            answer = read_answer(sock)
            assert (answer.status, answer.body) == (200, A_TXT)
            assert answer.headers["connection"].lower() == "close"
            sock.settimeout(2)
            assert sock.recv(1) == b""
        slow = [socket.create_connection(("127.0.0.1", site.server.port)) for _ in range(3)]
        try:
            dropped = dribble(site, slow, seconds_per_byte=0.5, limit=BODY_TIMEOUT + 10)
        finally:
            for sock in slow:
                sock.close()
        assert len(dropped) == len(slow)
        assert all(t <= BODY_TIMEOUT + 3 for t in dropped.values()), dropped
    finally:
        site.server.kill()
    assert "Traceback" not in site.server.stderr()
