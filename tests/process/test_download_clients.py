"""Download edges with real server processes and real clients: HTTP/1.0 asking for gzip
(both of aiohttp's parsers), aria2c while the file is replaced, `curl -OJ` with names a
URL cannot carry as they are."""

from __future__ import annotations

import gzip
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess

pytestmark = pytest.mark.allow_blocking

# AIOHTTP_NO_EXTENSIONS="" counts as unset: the C parser even if the tests run with it set.
PARSERS = {"c": {"AIOHTTP_NO_EXTENSIONS": ""}, "python": {"AIOHTTP_NO_EXTENSIONS": "1"}}
NOTES = b"a compressible line of notes\n" * 400  # text/plain, well over 1 KiB


@pytest.fixture(params=sorted(PARSERS))
def parser_server(request: pytest.FixtureRequest, storage_root: Path) -> Iterator[ServerProcess]:
    (storage_root / "notes.txt").write_bytes(NOTES)
    proc = ServerProcess(storage_root, env=PARSERS[str(request.param)])
    try:
        yield proc
    finally:
        proc.terminate()
    assert "Traceback" not in proc.stderr(), proc.stderr()[-5000:]


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one raw request; read the answer's Content-Length bytes, or to the end of the
    connection without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        pairs = (line.partition(":") for line in lines)
        headers = {name.strip().lower(): value.strip() for name, _, value in pairs}
        length = int(headers.get("content-length", "-1"))
        while (length < 0 or len(body) < length) and (chunk := sock.recv(65536)):
            body += chunk
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize("keep_alive", [False, True])
def test_http_1_0_asking_for_gzip_gets_the_file_without_chunks(
    parser_server: ServerProcess, keep_alive: bool
) -> None:
    extra = b"Connection: keep-alive\r\n" if keep_alive else b""
    raw = b"GET /files/notes.txt HTTP/1.0\r\nHost: x\r\nAccept-Encoding: gzip\r\n" + extra
    status, headers, body = exchange(parser_server.port, raw + b"\r\n")
    assert status == 200, body[:300]
    assert "transfer-encoding" not in headers
    assert headers["vary"] == "Accept-Encoding"
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    assert body == NOTES
