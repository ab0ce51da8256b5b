"""`?wait=N` requests whose clients leave end at once (SPEC: logged 499), instead of
polling the store for up to 300 s each: 5,000 abandoned waits slowed every request for
five minutes."""

from __future__ import annotations

import re
import socket
import urllib.request
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess, eventually

pytestmark = pytest.mark.allow_blocking

WAITERS = 200


def in_flight(server: ServerProcess) -> float:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as answer:
        text: str = answer.read().decode()
    match = re.search(r"^artifactd_http_requests_in_flight (\S+)$", text, re.M)
    assert match, text
    return float(match.group(1)) - 1  # less this scrape


def waits_logged_499(server: ServerProcess) -> int:
    return sum(1 for line in server.stderr_lines if "?wait=300" in line and '" 499 ' in line)


@pytest.mark.parametrize("parser", ["c", "python"])
def test_abandoned_waits_end_when_their_clients_leave(storage_root: Path, parser: str) -> None:
    env = {"AIOHTTP_NO_EXTENSIONS": "1" if parser == "python" else ""}
    server = ServerProcess(storage_root, env=env)
    try:
        sockets = []
        for n in range(WAITERS):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(f"GET /files/never/{n}?wait=300 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sockets.append(sock)
        eventually(lambda: in_flight(server) == WAITERS, timeout=20)
        for sock in sockets:
            sock.close()
        # Seconds, where the waits would have lasted 300.
        eventually(lambda: in_flight(server) == 0, timeout=10)
        eventually(lambda: waits_logged_499(server) == WAITERS, timeout=5)
    finally:
        server.terminate()
    assert "Traceback" not in server.stderr(), server.stderr()[-3000:]
