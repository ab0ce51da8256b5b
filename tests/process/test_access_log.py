"""The access log of a real `artifactd serve`: one line per request, text or JSON."""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess, SlowDownload, eventually

pytestmark = pytest.mark.allow_blocking

TEXT_LINE = re.compile(
    r'^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) (?P<remote>\S+) "(?P<method>[A-Z]+) '
    r'(?P<path>\S+)" (?P<status>\d{3}) (?P<bytes>\d+) (?P<ms>\d+\.\d{3})ms rid=(?P<rid>\S+) '
    r'ua="(?P<ua>(?:[^"\\]|\\.)*)"$'
)


def curl_headers(url: str) -> dict[str, str]:
    """GET with curl; the response's headers, lower-cased names."""
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-D", "-", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    fields = (line.split(":", 1) for line in out.splitlines()[1:] if ":" in line)
    return {name.strip().lower(): value.strip() for name, value in fields}


def access_lines(server: ServerProcess, path: str) -> list[str]:
    return [line.rstrip("\n") for line in server.stderr_lines if f'{path}"' in line]


def test_text_lines_carry_status_bytes_a_fine_duration_and_the_request_id(
    storage_root: Path,
) -> None:
    (storage_root / "a.bin").write_bytes(os.urandom(5000))
    server = ServerProcess(storage_root)
    try:
        rids = [curl_headers(server.files_url("a.bin"))["x-request-id"] for _ in range(5)]
        eventually(lambda: len(access_lines(server, "/files/a.bin")) == 5)
        matches = [TEXT_LINE.match(line) for line in access_lines(server, "/files/a.bin")]
    finally:
        server.kill()
    assert all(matches), access_lines(server, "/files/a.bin")
    fields = [m.groupdict() for m in matches if m]
    assert [f["rid"] for f in fields] == rids
    assert {(f["remote"], f["method"], f["status"]) for f in fields} == {
        ("127.0.0.1", "GET", "200")
    }
    assert all(f["ua"].startswith("curl/") for f in fields)
    # Bytes sent: the 5000-byte body and the response's head.
    assert all(5000 < int(f["bytes"]) < 5000 + 1024 for f in fields)
    # Durations are measured finer than the event loop's millisecond clock: five fast
    # requests do not all take a whole number of milliseconds.
    assert any(not f["ms"].endswith(".000") for f in fields)


def test_json_lines_have_every_field(storage_root: Path) -> None:
    (storage_root / "b.txt").write_bytes(b"hello\n")
    server = ServerProcess(storage_root, "--log-format", "json")
    try:
        rid = curl_headers(server.files_url("b.txt"))["x-request-id"]
        curl_headers(server.files_url("missing.txt"))
        eventually(lambda: len(access_lines(server, "/files/missing.txt")) == 1)
        found = json.loads(access_lines(server, "/files/b.txt")[0])
        missing = json.loads(access_lines(server, "/files/missing.txt")[0])
    finally:
        server.kill()
    assert set(found) == {
        "time",
        "remote",
        "method",
        "path",
        "status",
        "bytes",
        "duration_ms",
        "request_id",
        "user_agent",
    }
    assert (found["method"], found["path"], found["status"]) == ("GET", "/files/b.txt", 200)
    assert 6 < found["bytes"] < 6 + 1024 and found["request_id"] == rid
    assert found["user_agent"].startswith("curl/")
    assert isinstance(found["duration_ms"], float) and found["duration_ms"] >= 0
    assert missing["status"] == 404


@pytest.mark.parametrize("transfer", ["--sendfile", "--no-sendfile"])
def test_a_dropped_download_is_one_line_with_what_was_sent_and_no_warning(
    storage_root: Path, transfer: str
) -> None:
    size = 32 * 1024 * 1024
    (storage_root / "big.bin").write_bytes(os.urandom(size))
    server = ServerProcess(storage_root, transfer)
    try:
        download = SlowDownload(server.port, "/files/big.bin")
        assert download.received.startswith(b"HTTP/1.1 200")
        # Leave with a reset, as a killed client does, most of the body unsent.
        download.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        download.sock.close()
        eventually(lambda: len(access_lines(server, "/files/big.bin")) == 1)
        line = access_lines(server, "/files/big.bin")[0]
        metrics = subprocess.run(
            ["curl", "-sS", f"{server.url}/metrics"], capture_output=True, text=True, timeout=30
        ).stdout
    finally:
        server.kill()
    match = TEXT_LINE.match(line)
    assert match, line
    assert match["status"] == "200"
    assert 0 < int(match["bytes"]) < size
    assert "WARNING" not in server.stderr() and "Traceback" not in server.stderr()
    assert 'route="/files/{tail}",status="200"} 1.0' in metrics
    assert 'status="500"' not in metrics


def test_an_upload_dropped_midway_is_one_499_line_and_no_warning(storage_root: Path) -> None:
    server = ServerProcess(storage_root)
    try:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(
            b"PUT /files/cut.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
            + os.urandom(1024 * 1024)
        )
        tmp = storage_root / ".artifactd" / "tmp"
        eventually(lambda: any(tmp.iterdir()))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset, as from a CI job cancelled mid-upload
        eventually(lambda: len(access_lines(server, "/files/cut.bin")) == 1)
        eventually(lambda: not any(tmp.iterdir()))
    finally:
        server.kill()
    match = TEXT_LINE.match(access_lines(server, "/files/cut.bin")[0])
    assert match and (match["method"], match["status"]) == ("PUT", "499")
    assert "WARNING" not in server.stderr() and "Traceback" not in server.stderr()
    assert not (storage_root / "cut.bin").exists()


# Quotes, a backslash, a tab and UTF-8: what a client can put in a User-Agent (the parser
# refuses other control characters) that could end the field or forge another.
HOSTILE_AGENT = 'evil" rid=forged ua="x\\y\tz ü'


def raw_get(port: int, path: str, user_agent: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
            + b"User-Agent: "
            + user_agent.encode()
            + b"\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_user_agent_is_logged_escaped(storage_root: Path, log_format: str) -> None:
    (storage_root / "ua.txt").write_bytes(b"hi\n")
    server = ServerProcess(storage_root, "--log-format", log_format)
    try:
        assert raw_get(server.port, "/files/ua.txt", HOSTILE_AGENT).startswith(b"HTTP/1.1 200")
        assert raw_get(server.port, "/files/ua.txt", "plain/1.0").startswith(b"HTTP/1.1 200")
        eventually(lambda: len(access_lines(server, "/files/ua.txt")) == 2)
        lines = access_lines(server, "/files/ua.txt")
    finally:
        server.kill()
    assert all("\t" not in line for line in lines)
    if log_format == "json":
        agents = [json.loads(line)["user_agent"] for line in lines]
    else:
        matches = [TEXT_LINE.match(line) for line in lines]
        assert all(matches), lines
        agents = [m["ua"].encode().decode("unicode_escape") for m in matches if m]
        assert all(m["rid"] != "forged" for m in matches if m)
    assert agents == [HOSTILE_AGENT, "plain/1.0"]
