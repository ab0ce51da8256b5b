"""A server killed with SIGKILL mid-upload leaves a temp file under `.artifactd/tmp`; the
next start removes it before it says it is listening, whatever the moment of the kill."""

from __future__ import annotations

import os
import socket
import textwrap
from pathlib import Path

from tests.serverproc import ServerProcess, eventually

# Loaded by every Python started with this directory on PYTHONPATH: the server kills
# itself right after creating an upload's temp file, before it can lock it.
KILL_AFTER_CREATING = textwrap.dedent(
    """
    import os, signal
    _open = os.open
    def _open_then_die(path, flags, *args, **kwargs):
        fd = _open(path, flags, *args, **kwargs)
        if flags & os.O_EXCL and "/.artifactd/tmp/" in os.fspath(path):
            os.kill(os.getpid(), signal.SIGKILL)
        return fd
    os.open = _open_then_die
    """
)


def temp_files(root: Path) -> list[str]:
    return sorted(os.listdir(root / ".artifactd" / "tmp"))


def start_upload(server: ServerProcess, path: str, sent: bytes) -> socket.socket:
    """A PUT that announces more bytes than it sends: it stays in flight."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    head = f"PUT /files/{path} HTTP/1.1\r\nHost: x\r\nContent-Length: {10 * len(sent)}\r\n\r\n"
    sock.sendall(head.encode() + sent)
    return sock


def test_temp_files_of_a_killed_server_are_gone_when_the_next_one_is_ready(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    # Killed between creating an upload's temp file and locking it.
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(KILL_AFTER_CREATING)
    dying = ServerProcess(root, env={"PYTHONPATH": str(hooks)})
    try:  # a failure here must not leave the server running
        # More than a batch (UPLOAD_BATCH_BYTES): the temp file is made when the first arrives.
        upload = start_upload(dying, "starting.bin", os.urandom(2 * 1024 * 1024))
        dying.proc.wait(10)
    finally:
        dying.kill()
    upload.close()
    assert temp_files(root) != []
    # Killed while an upload's body streams in.
    server = ServerProcess(root)
    try:
        upload = start_upload(server, "streaming.bin", os.urandom(2 * 1024 * 1024))
        eventually(lambda: any(name.startswith("upload-") for name in temp_files(root)))
    finally:
        server.kill()
    upload.close()

    restarted = ServerProcess(root)
    try:
        assert temp_files(root) == []
        healthz = socket.create_connection(("127.0.0.1", restarted.port))
        healthz.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert healthz.recv(64).startswith(b"HTTP/1.1 200")  # serving, so SIGTERM drains
        healthz.close()
    finally:
        assert restarted.terminate() == 0
