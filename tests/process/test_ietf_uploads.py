"""The IETF resumable-upload draft against a real server, by a client written on a raw
socket: a PUT with `Upload-Complete: ?1` reads the 104 and its Location before sending any
of the body, the connection drops half-way (or the server is killed with SIGKILL), and the
client asks HEAD for the offset and PATCHes the rest. The artifact is invisible until then,
and byte-exact after."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from artifactd.tokens import TokenStore
from tests.serverproc import ServerProcess, eventually

MIB = 1024 * 1024
pytestmark = [pytest.mark.slow]


def read_head(connection: socket.socket) -> tuple[str, dict[str, str]]:
    """One response head (status line and fields), read byte by byte so that nothing after
    it is consumed."""
    raw = b""
    while not raw.endswith(b"\r\n\r\n"):
        byte = connection.recv(1)
        assert byte, f"the connection closed after {raw!r}"
        raw += byte
    status, *lines = raw.decode("latin-1").rstrip("\r\n").split("\r\n")
    return status, {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}


def start_resumable_put(
    port: int, path: str, length: int, auth: str, version: int
) -> tuple[socket.socket, str]:
    """Send the PUT's head and read its 104 before any of the body: the connection, and
    the upload resource's path."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    connection.sendall(
        f"PUT /files/{path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
        f"Upload-Draft-Interop-Version: {version}\r\nUpload-Complete: ?1\r\n"
        f"Content-Length: {length}\r\n\r\n".encode()
    )
    status, fields = read_head(connection)
    assert status == "HTTP/1.1 104 Upload Resumption Supported"
    assert fields["upload-draft-interop-version"] == str(version)
    assert fields["location"].startswith("/uploads/")
    return connection, fields["location"]


def upload_offset(url: str, auth: str, version: int) -> tuple[int, str]:
    request = urllib.request.Request(
        url,
        method="HEAD",
        headers={"Authorization": auth, "Upload-Draft-Interop-Version": str(version)},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204
        assert response.headers["Cache-Control"] == "no-store"
        return int(response.headers["Upload-Offset"]), response.headers["Upload-Complete"]


def patch_rest(url: str, auth: str, version: int, offset: int, data: bytes) -> dict[str, object]:
    request = urllib.request.Request(
        url,
        method="PATCH",
        data=data[offset:],
        headers={
            "Authorization": auth,
            "Upload-Draft-Interop-Version": str(version),
            "Upload-Offset": str(offset),
            "Upload-Complete": "?1",
            "Content-Type": "application/partial-upload",
        },
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 201
        assert response.headers["Upload-Complete"] == "?1"
        document: dict[str, object] = json.loads(response.read())
        return document


def assert_invisible(server: ServerProcess, path: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(server.files_url(path), timeout=10)
    assert missing.value.code == 404
    missing.value.close()


def fetch(server: ServerProcess, path: str) -> bytes:
    with urllib.request.urlopen(server.files_url(path), timeout=30) as response:
        body: bytes = response.read()
        return body


@pytest.mark.parametrize("version", [6, 8])
def test_a_dropped_put_resumes_with_head_and_patch(tmp_path: Path, version: int) -> None:
    root = tmp_path / "root"
    root.mkdir()
    auth = f"Bearer {TokenStore(root).add('ci', 'write')}"
    data = os.urandom(3 * MIB + 12345)
    half = len(data) // 2
    server = ServerProcess(root)
    try:
        connection, location = start_resumable_put(
            server.port, "big/data.bin", len(data), auth, version
        )
        bytes_file = root / ".artifactd" / "uploads" / (location.rsplit("/", 1)[1] + ".bin")
        connection.sendall(data[:half])
        eventually(lambda: bytes_file.stat().st_size == half)
        connection.close()  # dropped half-way

        url = f"{server.url}{location}"
        eventually(lambda: upload_offset(url, auth, version) == (half, "?0"))
        assert_invisible(server, "big/data.bin")
        document = patch_rest(url, auth, version, half, data)
        assert document["sha256"] == hashlib.sha256(data).hexdigest()
        assert fetch(server, "big/data.bin") == data
        assert upload_offset(url, auth, version) == (len(data), "?1")
    finally:
        assert server.terminate() == 0


def test_a_put_resumes_after_the_server_is_killed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    auth = f"Bearer {TokenStore(root).add('ci', 'write')}"
    data = os.urandom(24 * MIB + 777)
    sent = 20 * MIB
    server = ServerProcess(root)
    try:
        connection, location = start_resumable_put(server.port, "big/data.bin", len(data), auth, 6)
        bytes_file = root / ".artifactd" / "uploads" / (location.rsplit("/", 1)[1] + ".bin")
        connection.sendall(data[:sent])
        eventually(lambda: bytes_file.stat().st_size == sent)
    finally:
        server.kill()  # SIGKILL mid-upload: no drain, no cleanup
    connection.close()

    server = ServerProcess(root)
    try:
        url = f"{server.url}{location}"
        offset, complete = upload_offset(url, auth, 6)
        # What was made durable survives (every few MiB); nothing past the bytes received.
        assert 0 < offset <= sent
        assert complete == "?0"
        assert_invisible(server, "big/data.bin")
        patch_rest(url, auth, 6, offset, data)
        assert fetch(server, "big/data.bin") == data
    finally:
        assert server.terminate() == 0
