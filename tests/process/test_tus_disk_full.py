"""A tus PATCH on a full disk (a 64 MiB tmpfs kept full): 507 as for a PUT, the upload
keeps every byte it acknowledged, and once space is freed it resumes from HEAD's offset
and completes, byte-exact."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess
from tests.smalldisk import Filler, mounted_tmpfs

MIB = 1024 * 1024
pytestmark = pytest.mark.allow_blocking


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "disk") as mountpoint:
        yield mountpoint


def call(
    server: ServerProcess, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request(method, path, body=body, headers={"Tus-Resumable": "1.0.0", **headers})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def patch(server: ServerProcess, location: str, offset: int, piece: bytes) -> int:
    headers = {
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(len(piece)),
    }
    return call(server, "PATCH", location, headers, piece).status


def test_a_full_disk_during_a_patch_is_507_and_the_upload_resumes(small_disk: Path) -> None:
    root = small_disk / "root"
    data = os.urandom(6 * MIB)
    server = ServerProcess(root, "--evict-interval", "1h")
    filler = Filler(small_disk / "filler")
    try:
        sha256 = base64.b64encode(hashlib.sha256(data).hexdigest().encode()).decode()
        path = base64.b64encode(b"big/data.bin").decode()
        created = call(
            server,
            "POST",
            "/uploads/",
            {"Upload-Length": str(len(data)), "Upload-Metadata": f"path {path},sha256 {sha256}"},
        )
        assert created.status == 201
        location = created.headers["Location"]
        assert patch(server, location, 0, data[:MIB]) == 204

        filler.leave_free(256 * 1024)
        assert patch(server, location, MIB, data[MIB : 4 * MIB]) == 507
        offset = int(call(server, "HEAD", location, {}).headers["Upload-Offset"])
        assert MIB <= offset < 4 * MIB  # what was acknowledged is kept

        # A second upload, cut short by the full disk too, then cancelled: nothing stays.
        # (The first kept what it received, up to the disk's last byte: some room again.)
        filler.leave_free(256 * 1024)
        other = call(
            server,
            "POST",
            "/uploads/",
            {"Upload-Length": str(MIB), "Upload-Metadata": f"path {path}"},
        )
        assert other.status == 201
        assert patch(server, other.headers["Location"], 0, data[:MIB]) == 507
        assert call(server, "DELETE", other.headers["Location"], {}).status == 204
        cancelled = other.headers["Location"].rsplit("/", 1)[-1]
        assert [p.name for p in (root / ".artifactd" / "uploads").glob(f"*{cancelled}*")] == []

        filler.fill()  # not a byte left: a creation is refused with 507, not a 500
        refused = call(
            server, "POST", "/uploads/", {"Upload-Length": "1", "Upload-Metadata": f"path {path}"}
        )
        assert refused.status == 507

        filler.empty()
        assert patch(server, location, offset, data[offset:]) == 204
        stored = call(server, "HEAD", "/files/big/data.bin", {})
        assert stored.status == 200
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        connection.request("GET", "/files/big/data.bin")
        assert connection.getresponse().read() == data
        connection.close()
        # Nothing of the upload is left, not even the state a full disk cut short.
        uploads = root / ".artifactd" / "uploads"
        assert sorted(p.name for p in uploads.iterdir() if p.is_file()) == []
    finally:
        assert server.terminate() == 0
