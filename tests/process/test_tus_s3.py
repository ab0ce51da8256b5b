"""tus on `serve --backend s3`: a real tus client (tuspy) uploads a file of three S3 parts
through one node, the connection drops halfway through a piece, and the upload is resumed
through a second node sharing the bucket from the offset its HEAD gives; the artifact
arrives byte-exact on both, its digest verified."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tusclient.client import TusClient

from tests.process.test_s3_nodes import node
from tests.seaweed import (  # the fixtures register as `seaweed` and `s3_bucket`
    Seaweed,
    s3_bucket_fixture,  # noqa: F401
    seaweed_fixture,  # noqa: F401
)
from tests.serverproc import eventually

MIB = 1024 * 1024
PIECE = 6 * MIB
pytestmark = [pytest.mark.allow_blocking, pytest.mark.slow]


def offset_at(url: str) -> int:
    request = urllib.request.Request(url, method="HEAD", headers={"Tus-Resumable": "1.0.0"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.headers["Upload-Offset"])


def test_tuspy_resumes_on_another_node(seaweed: Seaweed, s3_bucket: str, tmp_path: Path) -> None:
    # The store's parts are 8 MiB: two full parts and a tail, sent in 6 MiB pieces.
    data = os.urandom(20 * MIB + 12_345)
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    a = node(tmp_path / "a", seaweed, s3_bucket)
    b = node(tmp_path / "b", seaweed, s3_bucket)
    try:
        with source.open("rb") as stream:
            uploader = TusClient(f"{a.url}/uploads/").uploader(
                file_stream=stream,
                chunk_size=PIECE,
                metadata={"path": "big/data.bin", "sha256": digest},
            )
            uploader.upload_chunk()  # type: ignore[no-untyped-call]
            uploader.upload_chunk()  # type: ignore[no-untyped-call]
            assert uploader.offset == 2 * PIECE  # one full part and a tail in the bucket
            upload_path = urlsplit(str(uploader.url)).path
            # The third piece is half sent when the connection drops: node A keeps the
            # bytes it received, and node B sees them at once.
            piece = socket.create_connection(("127.0.0.1", a.port))
            piece.sendall(
                f"PATCH {upload_path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                f"Upload-Offset: {2 * PIECE}\r\n"
                f"Content-Type: application/offset+octet-stream\r\nContent-Length: {PIECE}\r\n"
                "\r\n".encode()
                + data[2 * PIECE : 2 * PIECE + PIECE // 2]
            )
            piece.close()
            eventually(lambda: offset_at(f"{b.url}{upload_path}") > 2 * PIECE, timeout=30)
            received = offset_at(f"{b.url}{upload_path}")
            assert received <= 2 * PIECE + PIECE // 2

            resumed = TusClient(f"{b.url}/uploads/").uploader(
                file_stream=stream, url=f"{b.url}{upload_path}", chunk_size=PIECE
            )
            assert resumed.offset == received  # from node B's HEAD
            resumed.upload()
        for server in (a, b):
            with urllib.request.urlopen(server.files_url("big/data.bin"), timeout=30) as response:
                assert response.read() == data
                assert response.headers["X-Checksum-Sha256"] == digest
    finally:
        assert a.terminate() == 0
        assert b.terminate() == 0


def test_tuspy_resumes_after_the_node_is_killed(
    seaweed: Seaweed, s3_bucket: str, tmp_path: Path
) -> None:
    """SIGKILL while a piece is half received: the restarted node's HEAD gives the offset
    acknowledged before (a full part and a tail in the bucket); the dead node's append lock
    answers 409 until it expires, which tuspy retries through."""
    data = os.urandom(3 * PIECE + 12_345)
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    a = node(tmp_path / "a", seaweed, s3_bucket)
    try:
        with source.open("rb") as stream:
            uploader = TusClient(f"{a.url}/uploads/").uploader(
                file_stream=stream,
                chunk_size=PIECE,
                metadata={"path": "big/data.bin", "sha256": digest},
            )
            uploader.upload_chunk()  # type: ignore[no-untyped-call]
            uploader.upload_chunk()  # type: ignore[no-untyped-call]
            upload_path = urlsplit(str(uploader.url)).path
            piece = socket.create_connection(("127.0.0.1", a.port))
            piece.sendall(
                f"PATCH {upload_path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                f"Upload-Offset: {2 * PIECE}\r\n"
                f"Content-Type: application/offset+octet-stream\r\nContent-Length: {PIECE}\r\n"
                "\r\n".encode()
                + data[2 * PIECE : 2 * PIECE + PIECE // 2]
            )
            time.sleep(0.5)  # the piece is being received (and its append lock held)
    finally:
        a.kill()  # SIGKILL: no checkpoint, no lock released
    piece.close()

    a = node(tmp_path / "a", seaweed, s3_bucket)
    try:
        with source.open("rb") as stream:
            assert offset_at(f"{a.url}{upload_path}") == 2 * PIECE
            resumed = TusClient(f"{a.url}/uploads/").uploader(
                file_stream=stream,
                url=f"{a.url}{upload_path}",
                chunk_size=PIECE,
                retries=10,
                retry_delay=3,
            )
            started = time.monotonic()
            resumed.upload()
            print(f"resumed {time.monotonic() - started:.1f} s after the restart")
        with urllib.request.urlopen(a.files_url("big/data.bin"), timeout=30) as response:
            assert response.read() == data
    finally:
        assert a.terminate() == 0
