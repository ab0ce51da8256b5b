"""SIGKILL of a whole `serve --workers 2` (supervisor and workers at once) while many PUTs
are being committed in batches: after a restart every PUT answered 201 is there,
byte-identical, with its metadata; no file is without its row or half-written; nothing is
left in the temp directory; and `artifactd verify` is clean."""

from __future__ import annotations

import hashlib
import http.client
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.serverproc import ServerProcess

CLIENTS = 16
KILLS = 2


@dataclass
class Sent:
    """What the clients sent (by path) and which of it was acknowledged with a 201."""

    attempted: dict[str, bytes] = field(default_factory=dict)
    acked: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def put_until_stopped(port: int, client: int, sent: Sent, stop: threading.Event) -> None:
    """PUT new paths on one keep-alive connection (a new one after any error) until `stop`."""
    rng = random.Random(client)
    connection: http.client.HTTPConnection | None = None
    for n in range(100_000):
        if stop.is_set():
            break
        path = f"c{client % 3}/{client}-{n}.bin"  # three directories: shared per batch
        data = rng.randbytes(rng.choice((1, 4096, 65536 + 7)))
        content_type = f"application/x-test-{client}-{n}"
        with sent.lock:
            sent.attempted[path] = data
        try:
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request(
                "PUT", f"/files/{path}", body=data, headers={"Content-Type": content_type}
            )
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            if connection is not None:
                connection.close()
            connection = None
            if stop.wait(0.05):
                break
            continue
        if response.status == 201:
            with sent.lock:
                sent.acked[path] = (data, content_type)
    if connection is not None:
        connection.close()


def kill_mid_flight(root: Path, sent: Sent, acks: int) -> None:
    """Serve with two workers, PUT from many clients, SIGKILL the process group once
    `acks` more PUTs were acknowledged (others in flight), stop the clients."""
    server = ServerProcess(root, "--workers", "2", own_group=True)
    stop = threading.Event()
    start = len(sent.acked)
    clients = [
        threading.Thread(target=put_until_stopped, args=(server.port, c, sent, stop))
        for c in range(CLIENTS)
    ]
    try:
        for thread in clients:
            thread.start()
        deadline = time.monotonic() + 60
        while len(sent.acked) - start < acks and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(sent.acked) - start >= acks, "the PUTs did not get going"
    finally:
        server.kill_group()
        stop.set()
        for thread in clients:
            thread.join(30)


def test_every_acknowledged_put_survives_a_kill_during_batched_commits(tmp_path: Path) -> None:
    root = tmp_path / "root"
    sent = Sent()
    for _ in range(KILLS):
        kill_mid_flight(root, sent, acks=150)

    restarted = ServerProcess(root)  # cleans what the kill left, before it is ready
    try:
        for path, (data, content_type) in sent.acked.items():
            connection = http.client.HTTPConnection("127.0.0.1", restarted.port, timeout=10)
            connection.request("GET", f"/files/{path}")
            response = connection.getresponse()
            body = response.read()
            connection.close()
            assert (path, response.status) == (path, 200)
            assert body == data, path
            assert response.getheader("Content-Type") == content_type  # the metadata too
    finally:
        assert restarted.terminate() == 0

    assert os.listdir(root / ".artifactd" / "tmp") == []
    on_disk: dict[str, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".artifactd"]
        for name in filenames:
            path = os.path.relpath(os.path.join(dirpath, name), root)
            on_disk[path] = os.stat(os.path.join(dirpath, name))
    assert set(sent.acked) <= set(on_disk)
    with sqlite3.connect(root / ".artifactd" / "metadata.db") as db:
        rows = db.execute(
            "SELECT path, ino, size, mtime_ns, sha256, content_type, origin FROM versions"
        ).fetchall()
    db.close()
    by_path = {row[0]: row for row in rows}
    assert len(by_path) == len(rows)  # one row per path: none left of versions never published
    assert set(by_path) == set(on_disk)  # no file without its row, no row without its file
    for path, st in on_disk.items():
        data = (root / path).read_bytes()
        assert data == sent.attempted[path], path  # whole: never half-written
        _, ino, size, mtime_ns, sha256, content_type, origin = by_path[path]
        assert (ino, size, mtime_ns, origin) == (st.st_ino, st.st_size, st.st_mtime_ns, "upload")
        assert sha256 == hashlib.sha256(data).hexdigest()
        assert content_type == f"application/x-test-{path.split('/')[1].removesuffix('.bin')}"

    verify = subprocess.run(
        [sys.executable, "-m", "artifactd", "verify", "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stderr
