"""What a hostile client sends cannot grow the metrics or hold a connection, with aiohttp's
C and pure-Python parsers (the pure-Python one takes any token as a method and passes
targets the C one refuses)."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.serverproc import ServerProcess

pytestmark = pytest.mark.allow_blocking

PARSERS = {"c": {"AIOHTTP_NO_EXTENSIONS": ""}, "python": {"AIOHTTP_NO_EXTENSIONS": "1"}}
KEEPALIVE_SECONDS = 3


@pytest.fixture(scope="module", params=sorted(PARSERS))
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp(f"labels-{request.param}")
    (root / "a.txt").write_bytes(b"a\n")
    proc = ServerProcess(
        root, "--keepalive-timeout", f"{KEEPALIVE_SECONDS}s", env=PARSERS[str(request.param)]
    )
    try:
        yield proc
    finally:
        proc.terminate()
    assert "Traceback" not in proc.stderr(), proc.stderr()[-5000:]
    assert "Task exception was never retrieved" not in proc.stderr()


def exchange(port: int, raw: bytes, timeout: float) -> tuple[bytes, float]:
    """Send `raw`, read until the server closes; returns what came and how long it took
    (`timeout` if the server kept the connection open)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(timeout)
        sock.sendall(raw)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            return received, timeout
    return received, time.monotonic() - started


def request_series(server: ServerProcess) -> list[str]:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as answer:
        text: str = answer.read().decode()
    return [line for line in text.splitlines() if line.startswith("artifactd_http_requests")]


def test_invented_methods_count_as_other(server: ServerProcess) -> None:
    exchange(server.port, b"GET /files/a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 10)
    request_series(server)  # the scrape's own series
    before = request_series(server)
    for n in range(50):
        raw = f"BREW{n} /files/a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        answer, _ = exchange(server.port, raw.encode(), 10)
        assert answer.startswith((b"HTTP/1.1 405", b"HTTP/1.0 400", b"HTTP/1.1 400")), answer
    after = request_series(server)
    assert not any("BREW" in line for line in after)
    assert len(after) <= len(before) + 2  # at most OTHER's series (its _total and _created)


@pytest.mark.parametrize(
    "raw",
    [
        b"CONNECT /files/\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"CONNECT \xc3\xa9.example:443 HTTP/1.1\r\nHost: x\r\n\r\ntunnel bytes",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET http://\xc3\xa9.example/files/a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["connect-utf8-path", "connect-utf8-host", "connect", "absolute-utf8-host"],
)
def test_targets_only_one_parser_passes_are_answered_and_closed(
    server: ServerProcess, raw: bytes
) -> None:
    answer, seconds = exchange(server.port, raw, KEEPALIVE_SECONDS + 5)
    assert seconds < KEEPALIVE_SECONDS, (seconds, answer)
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer
    # and the server still serves (closed after it: not held for the keep-alive timeout)
    answer, _ = exchange(
        server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5
    )
    assert answer.startswith(b"HTTP/1.1 200")
