"""A request answered without its body being read (a GET with a body, an upload refused
before reading it) whose client then sends nothing more: aiohttp reads on after the
answer ("lingering"), for 10 s by default. Bounded by --body-timeout here, as every wait
for body bytes."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess

pytestmark = pytest.mark.allow_blocking

BODY_TIMEOUT_SECONDS = 1


def seconds_until_closed(port: int, raw: bytes) -> tuple[float, bytes]:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(30)
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return time.monotonic() - started, received


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /files/a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        b"PUT /files/b.txt HTTP/1.1\r\nHost: x\r\nExpect: nonsense\r\nContent-Length: 10\r\n\r\nab",
        b"DELETE /files/nope HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
    ],
    ids=["get-with-body", "chunked-healthz", "refused-expect", "delete-with-body"],
)
def test_an_unread_body_holds_the_connection_no_longer_than_the_body_timeout(
    storage_root: Path, raw: bytes
) -> None:
    (storage_root / "a.txt").write_bytes(b"a\n")
    server = ServerProcess(storage_root, "--body-timeout", f"{BODY_TIMEOUT_SECONDS}s")
    try:
        seconds, answer = seconds_until_closed(server.port, raw)
    finally:
        server.terminate()
    assert answer.startswith(b"HTTP/1.1 "), answer
    assert seconds < BODY_TIMEOUT_SECONDS + 2, seconds
