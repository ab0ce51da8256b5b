"""The artifact lifecycle against real server processes: uploads, crashes, retention, events."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess, SlowDownload, eventually

pytestmark = pytest.mark.allow_blocking


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=60)


def status_of(url: str, method: str = "GET") -> int:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return bytes(response.read())


def put_bytes(url: str, data: bytes, headers: dict[str, str] | None = None) -> dict[str, object]:
    request = urllib.request.Request(url, data=data, method="PUT", headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def temp_files(root: Path) -> list[str]:
    return os.listdir(root / ".artifactd" / "tmp")


def test_curl_upload_with_checksum_then_download_is_identical(
    server: ServerProcess, tmp_path: Path
) -> None:
    local = tmp_path / "app.tar.gz"
    local.write_bytes(os.urandom(3 * 1024 * 1024 + 3))
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    up = curl(
        "-f",
        "-T",
        str(local),
        "-H",
        f"X-Checksum-Sha256: {digest}",
        server.files_url("ci/77/app.tar.gz"),
    )
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["sha256"] == digest
    assert fetch(server.files_url("ci/77/app.tar.gz")) == local.read_bytes()

    wrong = curl(
        "-T",
        str(local),
        "-H",
        f"X-Checksum-Sha256: {'0' * 64}",
        "-w",
        "%{http_code}",
        "-o",
        os.devnull,
        server.files_url("ci/77/bad"),
    )
    assert wrong.stdout == "400"
    assert status_of(server.files_url("ci/77/bad")) == 404


def test_half_a_body_then_disconnect_stores_nothing(
    server: ServerProcess, storage_root: Path
) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            # More than a batch (1 MiB): the temp file is made when the first has arrived.
            b"PUT /files/cut/short.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n\r\n"
            + b"x" * 1_500_000
        )
        eventually(lambda: len(temp_files(storage_root)) == 1)
    eventually(lambda: temp_files(storage_root) == [])
    assert status_of(server.files_url("cut/short.bin")) == 404
    assert not (storage_root / "cut" / "short.bin").exists()
    assert status_of(server.url + "/healthz") == 200


def test_kill_9_during_upload_leaves_nothing_visible_and_restart_cleans_up(
    storage_root: Path,
) -> None:
    first = ServerProcess(storage_root)
    sock = socket.create_connection(("127.0.0.1", first.port))
    try:
        sock.sendall(
            b"PUT /files/crash/big.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
            + b"y" * 1_500_000  # more than a batch: its temp file is made
        )
        eventually(lambda: len(temp_files(storage_root)) == 1)
        first.proc.send_signal(signal.SIGKILL)
        first.kill()
    finally:
        sock.close()
    assert len(temp_files(storage_root)) == 1  # the crash left its temp file behind

    second = ServerProcess(storage_root)
    try:
        assert temp_files(storage_root) == []  # cleaned before the readiness line
        assert status_of(second.files_url("crash/big.bin")) == 404
    finally:
        second.kill()


def test_overwrite_during_slow_download_serves_old_bytes_whole(
    server: ServerProcess, storage_root: Path
) -> None:
    old = os.urandom(8 * 1024 * 1024)
    put_bytes(server.files_url("swap.bin"), old)
    download = SlowDownload(server.port, "/files/swap.bin")

    new = os.urandom(5 * 1024 * 1024)
    put_bytes(server.files_url("swap.bin"), new)
    assert fetch(server.files_url("swap.bin")) == new

    _, body = download.finish()
    assert body == old


def test_expired_artifact_is_404_even_before_eviction(
    server: ServerProcess, storage_root: Path
) -> None:
    put_bytes(server.files_url("ttl/soon"), b"x", {"X-Artifact-TTL": "1s"})
    assert status_of(server.files_url("ttl/soon")) == 200
    eventually(lambda: status_of(server.files_url("ttl/soon")) == 404, timeout=5)
    assert (storage_root / "ttl" / "soon").exists()  # the default evictor has not run yet


def test_evictor_removes_expired_bytes_from_disk(storage_root: Path) -> None:
    proc = ServerProcess(storage_root, "--evict-interval", "1")
    try:
        put_bytes(proc.files_url("ttl/gone"), b"x" * 1000, {"X-Artifact-TTL": "1s"})
        put_bytes(proc.files_url("ttl/kept"), b"k", {"X-Artifact-TTL": "1h"})
        eventually(lambda: not (storage_root / "ttl" / "gone").exists())
        assert (storage_root / "ttl" / "kept").exists()
        stats = json.loads(fetch(proc.url + "/api/v1/stats"))
        assert stats["evicted_total"] == 1
        assert stats["artifacts"] == 1
    finally:
        proc.kill()


def test_max_size_evicts_least_recently_accessed_first(storage_root: Path) -> None:
    proc = ServerProcess(storage_root, "--evict-interval", "1", "--max-size", "3000")
    try:
        for name in ("a", "b", "c"):
            put_bytes(proc.files_url(f"lru/{name}"), name.encode() * 1000)
            time.sleep(0.01)  # distinct access times
        fetch(proc.files_url("lru/a"))  # a is now the most recently used
        put_bytes(proc.files_url("lru/d"), b"d" * 1000)
        eventually(lambda: not (storage_root / "lru" / "b").exists())
        for name in ("a", "c", "d"):
            assert (storage_root / "lru" / name).exists(), name
    finally:
        proc.kill()


def test_metadata_survives_a_restart(storage_root: Path) -> None:
    first = ServerProcess(storage_root)
    doc = put_bytes(
        first.files_url("keep/it.bin"),
        b"persist",
        {"X-Artifact-TTL": "7d", "Content-Type": "application/x-thing"},
    )
    assert first.terminate() == 0

    second = ServerProcess(storage_root)
    try:
        meta = json.loads(fetch(second.url + "/api/v1/artifacts/keep/it.bin"))
        assert meta["etag"] == doc["etag"]
        assert meta["expires_at"] == doc["expires_at"]
        assert meta["content_type"] == "application/x-thing"
        with urllib.request.urlopen(second.files_url("keep/it.bin")) as response:
            assert response.headers["ETag"] == doc["etag"]
    finally:
        second.kill()


def read_sse(
    sock: socket.socket, until: Callable[[list[dict[str, str]]], bool]
) -> list[dict[str, str]]:
    """Parse SSE messages from a socket until `until(messages)` holds (or EOF)."""
    buffer = b""
    messages: list[dict[str, str]] = []
    sock.settimeout(15)
    while not until(messages):
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            fields: dict[str, str] = {}
            for line in block.decode().splitlines():
                if line.startswith(":") or ":" not in line:
                    continue
                key, value = line.split(":", 1)
                fields[key] = value.strip()
            if "event" in fields:
                messages.append(fields)
    return messages


def test_sse_client_sees_created_replaced_deleted_and_shutdown(storage_root: Path) -> None:
    proc = ServerProcess(storage_root)
    try:
        sock = socket.create_connection(("127.0.0.1", proc.port))
        sock.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        read_sse(sock, lambda m: True)  # headers and the comment that says we are connected
        put_bytes(proc.files_url("ev/x"), b"1")
        put_bytes(proc.files_url("ev/x"), b"2")
        assert status_of(proc.files_url("ev/x"), "DELETE") == 204
        messages = read_sse(sock, lambda m: len(m) >= 3)
        assert [m["event"] for m in messages] == ["created", "replaced", "deleted"]
        ids = [int(m["id"]) for m in messages]
        assert ids == sorted(ids) and len(set(ids)) == 3
        assert json.loads(messages[0]["data"])["path"] == "ev/x"

        # Resuming with Last-Event-ID replays what came after it.
        with socket.create_connection(("127.0.0.1", proc.port)) as again:
            request = f"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {ids[0]}\r\n\r\n"
            again.sendall(request.encode())
            replay = read_sse(again, lambda m: len(m) >= 2)
            assert [m["event"] for m in replay] == ["replaced", "deleted"]

        proc.proc.send_signal(signal.SIGTERM)
        final = read_sse(sock, lambda m: any(x["event"] == "shutdown" for x in m))
        assert final[-1]["event"] == "shutdown"
        sock.close()
        assert proc.proc.wait(30) == 0
    finally:
        proc.kill()


def test_wait_is_satisfied_by_a_put_a_second_later(server: ServerProcess) -> None:
    waiter = subprocess.Popen(
        ["curl", "-sS", "-f", server.files_url("later/report.txt?wait=20")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(1)
    assert waiter.poll() is None  # still held by the server
    put_bytes(server.files_url("later/report.txt"), b"ready")
    out, err = waiter.communicate(timeout=20)
    assert waiter.returncode == 0, err
    assert out == b"ready"


def test_verify_catches_a_flipped_byte(storage_root: Path) -> None:
    proc = ServerProcess(storage_root)
    put_bytes(proc.files_url("v/good.bin"), b"g" * 5000)
    put_bytes(proc.files_url("v/bad.bin"), b"b" * 5000)
    assert proc.terminate() == 0

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "artifactd", "verify", "--root", str(storage_root)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    clean = verify()
    assert clean.returncode == 0, clean.stderr
    with open(storage_root / "v" / "bad.bin", "r+b") as f:
        f.seek(1234)
        f.write(b"X")
    broken = verify()
    assert broken.returncode == 1
    assert "v/bad.bin" in broken.stderr
    assert "v/good.bin" not in broken.stderr


def test_slow_upload_body_times_out_and_stores_nothing(storage_root: Path) -> None:
    proc = ServerProcess(storage_root, "--body-timeout", "1s")
    try:
        with socket.create_connection(("127.0.0.1", proc.port)) as sock:
            sock.sendall(b"PUT /files/idle HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            sock.settimeout(10)
            answer = sock.recv(4096)
        assert b" 400 " in answer.split(b"\r\n", 1)[0]
        eventually(lambda: temp_files(storage_root) == [])
        assert status_of(proc.files_url("idle")) == 404
    finally:
        proc.kill()


def test_threaded_parallel_uploads_of_one_path_never_mix(server: ServerProcess) -> None:
    bodies = [bytes([i]) * (256 * 1024) for i in range(6)]
    threads = [
        threading.Thread(target=put_bytes, args=(server.files_url("race.bin"), body))
        for body in bodies
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert fetch(server.files_url("race.bin")) in bodies
