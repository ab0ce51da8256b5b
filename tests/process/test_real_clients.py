"""A real `artifactd serve` process driven by real curl and wget."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess, SlowDownload

pytestmark = pytest.mark.allow_blocking


@pytest.fixture(params=["--sendfile", "--no-sendfile"], ids=["zero-copy", "streaming"])
def server(request: pytest.FixtureRequest, storage_root: Path) -> Iterator[ServerProcess]:
    """Every download test runs down both body paths: sendfile and 64 KiB chunks."""
    proc = ServerProcess(storage_root, request.param)
    try:
        yield proc
    finally:
        proc.kill()


def make_file(root: Path, rel: str, size: int) -> bytes:
    data = os.urandom(size)
    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return data


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60, check=True)


def test_curl_download_then_resume_is_byte_identical(
    server: ServerProcess, storage_root: Path, tmp_path: Path
) -> None:
    data = make_file(storage_root, "proj/1/app.bin", 3 * 1024 * 1024 + 17)
    out = tmp_path / "out"
    out.mkdir()
    run("curl", "-sSf", "-O", server.files_url("proj/1/app.bin"), cwd=out)
    assert (out / "app.bin").read_bytes() == data

    with open(out / "app.bin", "r+b") as partial:
        partial.truncate(1_000_001)
    run("curl", "-sSf", "-C", "-", "-O", server.files_url("proj/1/app.bin"), cwd=out)
    assert hashlib.sha256((out / "app.bin").read_bytes()).digest() == hashlib.sha256(data).digest()


def test_wget_continue_is_byte_identical(
    server: ServerProcess, storage_root: Path, tmp_path: Path
) -> None:
    data = make_file(storage_root, "w/file.bin", 2 * 1024 * 1024 + 5)
    out = tmp_path / "wget"
    out.mkdir()
    (out / "file.bin").write_bytes(data[:777_777])
    run("wget", "-q", "-c", server.files_url("w/file.bin"), cwd=out)
    assert (out / "file.bin").read_bytes() == data


def test_wget_recursive_mirrors_a_directory(
    server: ServerProcess, storage_root: Path, tmp_path: Path
) -> None:
    a = make_file(storage_root, "site/a.bin", 1000)
    b = make_file(storage_root, "site/sub/b b.bin", 2000)
    make_file(storage_root, "elsewhere.bin", 10)
    out = tmp_path / "mirror"
    out.mkdir()
    run("wget", "-q", "-r", "-np", "-nH", "--cut-dirs=1", server.files_url("site/"), cwd=out)
    assert (out / "site" / "a.bin").read_bytes() == a
    assert (out / "site" / "sub" / "b b.bin").read_bytes() == b
    assert not (out / "elsewhere.bin").exists()


def header_map(raw: str) -> dict[str, str]:
    headers = {}
    for line in raw.splitlines()[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return headers


def test_head_and_get_headers_match_over_the_wire(
    server: ServerProcess, storage_root: Path
) -> None:
    make_file(storage_root, "h.tar.gz", 5000)
    get = run("curl", "-sS", "-D", "-", "-o", os.devnull, server.files_url("h.tar.gz")).stdout
    head = run("curl", "-sS", "-I", server.files_url("h.tar.gz")).stdout
    assert get.splitlines()[0] == head.splitlines()[0]
    skip = {"date", "x-request-id", "x-response-time"}
    get_h = {k: v for k, v in header_map(get).items() if k not in skip}
    head_h = {k: v for k, v in header_map(head).items() if k not in skip}
    assert get_h == head_h
    assert get_h["content-type"] == "application/gzip"
    assert "content-encoding" not in get_h


def test_sigterm_lets_a_slow_download_finish_and_exits_zero(
    storage_root: Path,
) -> None:
    size = 8 * 1024 * 1024
    data = make_file(storage_root, "slow.bin", size)
    proc = ServerProcess(storage_root, "--shutdown-timeout", "30s")
    try:
        download = SlowDownload(proc.port, "/files/slow.bin")
        proc.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the server is draining now; the download is still in flight
        assert proc.proc.poll() is None
        with pytest.raises(OSError):  # no new connections while draining
            socket.create_connection(("127.0.0.1", proc.port), timeout=2)
        head, body = download.finish()
        assert proc.proc.wait(30) == 0
    finally:
        proc.kill()
    assert head.startswith(b"HTTP/1.1 200")
    assert body == data


def test_aria2c_segmented_download_is_byte_identical(
    server: ServerProcess, storage_root: Path, tmp_path: Path
) -> None:
    data = make_file(storage_root, "seg.bin", 4 * 1024 * 1024)
    run("aria2c", "-q", "-x4", "-s4", "-k1M", "-d", str(tmp_path), server.files_url("seg.bin"))
    assert (tmp_path / "seg.bin").read_bytes() == data


@pytest.mark.parametrize("transfer", ["--sendfile", "--no-sendfile"])
def test_asyncio_loop_serves_downloads_and_ranges(
    storage_root: Path, tmp_path: Path, transfer: str
) -> None:
    data = make_file(storage_root, "loop.bin", 1024 * 1024 + 3)
    proc = ServerProcess(storage_root, "--loop", "asyncio", transfer)
    try:
        out = tmp_path / "loop.bin"
        run("curl", "-sSf", "-o", str(out), proc.files_url("loop.bin"))
        assert out.read_bytes() == data
        run("curl", "-sSf", "-r", "100-199", "-o", str(out), proc.files_url("loop.bin"))
        assert out.read_bytes() == data[100:200]
    finally:
        proc.kill()
