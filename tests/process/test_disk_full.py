"""A real server whose storage root fills up (a 64 MiB tmpfs kept full to the last few
KiB): overwrites, deletes, reads, an eviction pass (`artifactd gc`) and `artifactd verify`.
Every answer is a success or 507, never 500; after a 507 the old version is served whole;
nothing recorded goes missing."""

from __future__ import annotations

import collections
import http.client
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess
from tests.smalldisk import KIB, Filler, mounted_tmpfs


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "disk") as mountpoint:
        yield mountpoint


def call(
    server: ServerProcess, method: str, path: str, body: bytes | None = None
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def artifactd(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "artifactd", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_a_full_disk_answers_507_and_keeps_every_old_version(small_disk: Path) -> None:
    root = small_disk / "root"
    rng = random.Random(15)
    server = ServerProcess(root, "--evict-interval", "1h")
    try:
        stored: dict[str, bytes] = {}
        for number in range(30):
            stored[f"keep/{number}"] = rng.randbytes(64 * KIB)
            assert call(server, "PUT", f"/files/keep/{number}", stored[f"keep/{number}"])[0] == 201
        for number in range(20):
            status, _ = call(server, "PUT", f"/files/old/{number}?ttl=1s", rng.randbytes(64 * KIB))
            assert status == 201
        (root / "hand").mkdir()
        placed = {f"hand/{number}": rng.randbytes(4 * KIB) for number in range(20)}
        for path, data in placed.items():
            (root / path).write_bytes(data)

        filler = Filler(small_disk / "filler")
        statuses: collections.Counter[int] = collections.Counter()
        for round_ in range(300):
            filler.leave_free(rng.choice([0, 0, 4, 16, 48, 96]) * KIB)
            path = f"keep/{rng.randrange(30)}"
            if round_ % 10 == 9:
                status, _ = call(server, "DELETE", f"/files/{path}")
                if status == 204:
                    del stored[path]
            else:
                data = rng.randbytes(rng.choice([1, 16, 64]) * KIB)
                status, _ = call(server, "PUT", f"/files/{path}", data)
                if status in (200, 201):
                    stored[path] = data
            statuses[status] += 1
            expected = (200, stored[path]) if path in stored else (404,)
            got = call(server, "GET", f"/files/{path}")
            assert got[: len(expected)] == expected, (round_, status)
        assert set(statuses) <= {200, 201, 204, 404, 507}, statuses
        assert statuses[507] > 10 and statuses[200] > 10, statuses

        # Files placed by hand are served though their digests cannot be recorded.
        filler.leave_free(0)
        for path, data in placed.items():
            assert call(server, "GET", f"/files/{path}") == (200, data)

        # One eviction pass, on the full disk, removes every expired artifact.
        time.sleep(1.1)
        gc = artifactd("gc", "--root", str(root))
        assert gc.returncode == 0, gc.stderr
        assert all(call(server, "GET", f"/files/old/{n}")[0] == 404 for n in range(20))
        filler.empty()
        for path, data in stored.items():
            assert call(server, "GET", f"/files/{path}") == (200, data)
    finally:
        assert server.terminate() == 0
    assert "Traceback" not in server.stderr()
    verified = artifactd("verify", "--root", str(root))
    assert verified.returncode == 0, verified.stdout + verified.stderr
