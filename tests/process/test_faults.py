"""Storage faults against real server processes: a full disk, a read-only storage root, and
missing or damaged metadata.

The full and the read-only disk are small tmpfs filesystems the tests mount themselves,
which needs root (as in CI). Without it those tests skip, and an in-process test injects the
same failure (ENOSPC from the upload's writes) instead.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from artifactd.settings import Settings
from artifactd.store.filesystem import FilesystemStore
from artifactd.web.app import create_app
from tests.serverproc import ServerProcess, eventually
from tests.web.conftest import ClientFactory

pytestmark = pytest.mark.allow_blocking

MiB = 1024 * 1024


# -- helpers --------------------------------------------------------------------------------


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    server: ServerProcess,
    method: str,
    path: str,
    body: bytes | Iterable[bytes] | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request; an iterable body goes out with chunked transfer encoding."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        chunked = body is not None and not isinstance(body, bytes)
        connection.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        response = connection.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


def assert_json_error(reply: Reply, status: int, *words: str) -> None:
    assert reply.status == status, (reply.status, reply.body)
    document = reply.json()
    assert set(document) == {"error", "status"} and document["status"] == status
    for word in words:
        assert word in str(document["error"]), document


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_under(root: Path) -> dict[str, bytes]:
    """Every file under the root but its internal state, with its bytes."""
    found: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d != ".artifactd"]
        for name in filenames:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def temp_files(root: Path) -> list[str]:
    return os.listdir(root / ".artifactd" / "tmp")


def chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# -- small filesystems ----------------------------------------------------------------------


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mounts tmpfs filesystems of a given size (root only); all unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root; test_injected_disk_full covers this")
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point))
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
        mounted.append(point)
        return point

    try:
        yield mount
    finally:
        for point in reversed(mounted):
            if run("umount", str(point)).returncode != 0:
                run("umount", "-l", str(point))


def remount_read_only(point: Path) -> None:
    done = run("mount", "-o", "remount,ro", str(point))
    assert done.returncode == 0, done.stderr
    probe = point / "probe"
    with pytest.raises(OSError) as caught:
        probe.write_bytes(b"x")
    assert caught.value.errno == errno.EROFS


# -- disk full ------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_disk_full_during_upload_is_507_and_leaves_nothing(
    small_disk: Callable[[str], Path], framing: str
) -> None:
    root = small_disk("2m") / "storage"
    root.mkdir()
    server = ServerProcess(root)
    try:
        old = b"the previous version\n" * 10
        first = call(server, "PUT", "/files/ci/app.bin", old)
        assert first.status == 201
        etag = first.headers["etag"]
        before = files_under(root)

        big = os.urandom(3 * MiB)  # more than the whole filesystem
        for path in ("/files/ci/app.bin", "/files/ci/new.bin"):
            body: bytes | Iterable[bytes] = big if framing == "content-length" else chunks(big)
            assert_json_error(call(server, "PUT", path, body), 507, "insufficient storage")

        eventually(lambda: temp_files(root) == [])
        assert files_under(root) == before  # no half artifact, the old version intact
        again = call(server, "GET", "/files/ci/app.bin")
        assert (again.status, again.body, again.headers["etag"]) == (200, old, etag)
        assert call(server, "GET", "/files/ci/new.bin").status == 404
        assert call(server, "GET", "/healthz").status == 200

        # The space of the failed uploads was given back: a smaller upload fits again.
        fits = os.urandom(MiB)
        stored = call(server, "PUT", "/files/ci/fits.bin", fits)
        assert stored.status == 201, stored.body
        assert call(server, "GET", "/files/ci/fits.bin").body == fits
    finally:
        server.kill()
    assert "Traceback" not in server.stderr()


async def test_injected_disk_full(
    aiohttp_client: ClientFactory, storage_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same contract without a tmpfs: writes to upload temp files fail with ENOSPC once
    100 KiB are in (as on a machine where the tests cannot mount filesystems)."""
    store = await FilesystemStore.create(storage_root)
    tmp_dir = str(store.tmp_dir)
    real_write = os.write
    written: dict[int, int] = {}

    def write(fd: int, data: bytes | memoryview) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(tmp_dir):
            written[fd] = written.get(fd, 0) + len(data)
            if written[fd] > 100 * 1024:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    client: TestClient = await aiohttp_client(  # type: ignore[type-arg]
        create_app(Settings(root=storage_root), store)
    )
    old = b"old"
    assert (await client.put("/files/a.bin", data=old)).status == 201
    answer = await client.put("/files/a.bin", data=os.urandom(MiB))
    assert answer.status == 507
    document = await answer.json()
    assert document["status"] == 507 and "insufficient storage" in document["error"]
    assert temp_files(storage_root) == []
    assert await (await client.get("/files/a.bin")).read() == old
    assert files_under(storage_root) == {"a.bin": old}


# -- read-only storage root -----------------------------------------------------------------


def test_read_only_root_serves_downloads_and_refuses_writes(
    small_disk: Callable[[str], Path],
) -> None:
    disk = small_disk("8m")
    root = disk / "storage"
    root.mkdir()
    app_bin = os.urandom(200_000)
    writer = ServerProcess(root)
    try:
        stored = call(
            writer,
            "PUT",
            "/files/rel/app.bin",
            app_bin,
            {"Content-Type": "application/x-thing", "X-Artifact-TTL": "7d"},
        )
        assert stored.status == 201
        doc = stored.json()
        gone = call(writer, "PUT", "/files/rel/gone.bin", b"x", {"X-Artifact-TTL": "1s"})
        assert gone.status == 201
    finally:
        assert writer.terminate() == 0
    (root / "hand").mkdir()
    (root / "hand" / "notes.txt").write_bytes(b"copied in by hand\n")  # never hashed yet
    (root / ".artifactd" / "tmp" / "upload-left-by-a-crash.part").write_bytes(b"partial")
    time.sleep(1.1)  # rel/gone.bin expires
    before = files_under(root)
    remount_read_only(disk)

    server = ServerProcess(root, "--evict-interval", "1s")
    try:
        eventually(lambda: "read-only" in server.stderr())
        got = call(server, "GET", "/files/rel/app.bin")
        assert got.status == 200 and got.body == app_bin
        assert got.headers["etag"] == doc["etag"]
        assert got.headers["content-type"] == "application/x-thing"
        assert got.headers["x-checksum-sha256"] == sha256(app_bin)
        part = call(server, "GET", "/files/rel/app.bin", headers={"Range": "bytes=10-19"})
        assert (part.status, part.body) == (206, app_bin[10:20])
        hand = call(server, "GET", "/files/hand/notes.txt")
        assert hand.status == 200
        assert hand.headers["x-checksum-sha256"] == sha256(b"copied in by hand\n")
        assert call(server, "GET", "/files/rel/gone.bin").status == 404  # expired stays gone
        listing = call(server, "GET", "/files/rel/?format=json").json()
        assert [e["name"] for e in listing["entries"]] == ["app.bin"]
        meta = call(server, "GET", "/api/v1/artifacts/rel/app.bin").json()
        assert meta["sha256"] == sha256(app_bin)

        assert_json_error(call(server, "PUT", "/files/rel/new.bin", b"new"), 507, "read-only")
        assert_json_error(call(server, "PUT", "/files/rel/app.bin", b"new"), 507, "read-only")
        assert_json_error(call(server, "DELETE", "/files/rel/app.bin"), 507, "read-only")
        form = (
            b"--b\r\nContent-Disposition: form-data; name=file; filename=f.txt\r\n\r\n"
            b"form\r\n--b--\r\n"
        )
        posted = call(
            server,
            "POST",
            "/files/rel/",
            form,
            {"Content-Type": "multipart/form-data; boundary=b", "Accept": "application/json"},
        )
        assert_json_error(posted, 507, "read-only")
        time.sleep(1.5)  # an eviction pass ran: it must neither fail nor touch anything
        assert call(server, "GET", "/healthz").status == 200
    finally:
        server.kill()
    assert files_under(root) == before
    assert "Traceback" not in server.stderr()
    assert " ERROR " not in server.stderr(), server.stderr()


def test_read_only_root_never_served_before(small_disk: Callable[[str], Path]) -> None:
    """Files on a read-only filesystem, no `.artifactd` state: served, hashed, never written."""
    disk = small_disk("4m")
    (disk / "pub").mkdir()
    (disk / "pub" / "readme.txt").write_bytes(b"read me\n")
    remount_read_only(disk)
    server = ServerProcess(disk)
    try:
        got = call(server, "GET", "/files/pub/readme.txt")
        assert (got.status, got.body) == (200, b"read me\n")
        assert got.headers["x-checksum-sha256"] == sha256(b"read me\n")
        assert_json_error(call(server, "PUT", "/files/pub/x", b"x"), 507, "read-only")
    finally:
        server.kill()
    assert sorted(os.listdir(disk)) == ["pub"]
    assert "Traceback" not in server.stderr()


# -- missing or damaged metadata ------------------------------------------------------------


def populate(root: Path) -> dict[str, dict[str, object]]:
    """Upload a few artifacts through a server, stop it cleanly; their PUT answers by path."""
    server = ServerProcess(root)
    docs: dict[str, dict[str, object]] = {}
    try:
        for index in range(5):
            path = f"proj/{index}/app-{index}.tar.gz"
            reply = call(server, "PUT", f"/files/{path}", os.urandom(10_000 + index))
            assert reply.status == 201
            docs[path] = reply.json()
    finally:
        assert server.terminate() == 0
    return docs


def database_files(root: Path) -> list[Path]:
    return sorted((root / ".artifactd").glob("metadata.db*"))


@pytest.mark.parametrize("loss", ["deleted", "emptied"])
def test_lost_metadata_is_rebuilt_loudly_and_every_file_still_served(
    storage_root: Path, loss: str
) -> None:
    docs = populate(storage_root)
    contents = files_under(storage_root)
    for db_file in database_files(storage_root):
        db_file.unlink()
    if loss == "emptied":
        (storage_root / ".artifactd" / "metadata.db").write_bytes(b"")

    server = ServerProcess(storage_root)
    try:
        eventually(lambda: "metadata.db was missing" in server.stderr())
        for path, doc in docs.items():
            got = call(server, "GET", f"/files/{path}")
            assert got.status == 200 and got.body == contents[path]
            assert got.headers["x-checksum-sha256"] == doc["sha256"]  # computed again
            assert got.headers["etag"] == doc["etag"]  # so the same ETag as before
        listed = call(server, "GET", "/api/v1/artifacts?prefix=proj/").json()
        assert len(listed["artifacts"]) == len(docs)
    finally:
        server.kill()
    assert files_under(storage_root) == contents
    assert "Traceback" not in server.stderr()


def serve_expecting_failure(root: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "artifactd", "serve", "--root", str(root), "--port", "0"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def damage_pages(db: Path) -> None:
    """Grow the database past a few pages, then overwrite some in the middle."""
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO versions (path, ino, size, mtime_ns, sha256, created_at) "
            "VALUES (?, ?, 1, 1, ?, 0)",
            [(f"padding/{i}", i, "ab" * 32) for i in range(5000)],
        )
    conn.close()
    for leftover in db.parent.glob("metadata.db-*"):
        leftover.unlink()
    size = db.stat().st_size
    assert size > 64 * 1024
    with db.open("r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(16 * 1024))


@pytest.mark.parametrize("damage", ["garbage", "text", "damaged-pages"])
def test_corrupt_metadata_is_a_clear_startup_error(storage_root: Path, damage: str) -> None:
    docs = populate(storage_root)
    contents = files_under(storage_root)
    db = storage_root / ".artifactd" / "metadata.db"
    if damage == "garbage":
        db.write_bytes(os.urandom(64 * 1024))
    elif damage == "text":
        db.write_bytes(b"this is not a database\n" * 100)
    else:
        damage_pages(db)
    broken = db.read_bytes()

    failed = serve_expecting_failure(storage_root)
    assert failed.returncode != 0
    assert str(db) in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    assert "listening" not in failed.stdout
    assert db.read_bytes() == broken  # left as it was, for whoever recovers it
    assert files_under(storage_root) == contents

    # The recovery the message suggests: move the database aside, start again.
    shutil.move(db, db.with_name("metadata.db.broken"))
    server = ServerProcess(storage_root)
    try:
        for path, doc in docs.items():
            got = call(server, "GET", f"/files/{path}")
            assert got.status == 200 and got.body == contents[path]
            assert got.headers["x-checksum-sha256"] == doc["sha256"]
    finally:
        server.kill()
