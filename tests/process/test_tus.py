"""A real tus client (tuspy) uploads through a real server, which is killed with SIGKILL
after the first piece, while the second is half sent; a new server on the same root
resumes from the offset HEAD gives, and the artifact arrives byte-exact with its digest
verified."""

from __future__ import annotations

import hashlib
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tusclient.client import TusClient

from artifactd.tokens import TokenStore
from tests.serverproc import ServerProcess, eventually

CHUNK = 1024 * 1024
pytestmark = [
    pytest.mark.slow,
]


def test_tuspy_resumes_after_the_server_is_killed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    tokens = TokenStore(root)
    auth = {"Authorization": f"Bearer {tokens.add('ci', 'write')}"}
    other = {"Authorization": f"Bearer {tokens.add('other', 'write')}"}
    data = os.urandom(3 * CHUNK + 12345)
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()

    server = ServerProcess(root)
    stream = source.open("rb")
    try:
        uploader = TusClient(f"{server.url}/uploads/", headers=auth).uploader(
            file_stream=stream,
            chunk_size=CHUNK,
            metadata={"path": "big/data.bin", "sha256": digest},
        )
        uploader.upload_chunk()  # type: ignore[no-untyped-call]
        assert uploader.offset == CHUNK
        upload_path = urlsplit(str(uploader.url)).path
        # The next piece is on its way, half sent, when the server dies.
        bytes_file = root / ".artifactd" / "uploads" / (upload_path.rsplit("/", 1)[-1] + ".bin")
        piece = socket.create_connection(("127.0.0.1", server.port))
        piece.sendall(
            f"PATCH {upload_path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
            f"Authorization: {auth['Authorization']}\r\nUpload-Offset: {CHUNK}\r\n"
            f"Content-Type: application/offset+octet-stream\r\nContent-Length: {CHUNK}\r\n"
            "\r\n".encode()
            + data[CHUNK : CHUNK + CHUNK // 2]
        )
        eventually(lambda: bytes_file.stat().st_size > CHUNK)
    finally:
        server.kill()  # SIGKILL: no drain, no cleanup
    piece.close()

    server = ServerProcess(root)
    try:
        # Another token cannot see the upload.
        request = urllib.request.Request(
            f"{server.url}{upload_path}", method="HEAD", headers={**other, "Tus-Resumable": "1.0.0"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 404
        refused.value.close()

        resumed = TusClient(f"{server.url}/uploads/", headers=auth).uploader(
            file_stream=stream, url=f"{server.url}{upload_path}", chunk_size=CHUNK
        )
        assert resumed.offset == CHUNK  # from HEAD, after the restart
        resumed.upload()
        with urllib.request.urlopen(server.files_url("big/data.bin"), timeout=10) as response:
            assert response.read() == data
    finally:
        stream.close()
        assert server.terminate() == 0
