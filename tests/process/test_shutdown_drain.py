"""SIGTERM drains uploads in flight as it drains downloads: their bodies keep arriving until
they complete, within --shutdown-timeout; what outlives it is cancelled and stores nothing."""

from __future__ import annotations

import hashlib
import signal
import time
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess, SlowUpload

pytestmark = [pytest.mark.allow_blocking, pytest.mark.slow]


def test_sigterm_lets_uploads_in_flight_complete(storage_root: Path) -> None:
    proc = ServerProcess(storage_root, "--shutdown-timeout", "30")
    try:
        uploads = [SlowUpload(proc.port, f"/files/drain/u{i}.bin", 24, 0.1) for i in range(8)]
        for upload in uploads:
            upload.start()
        time.sleep(1.0)  # every upload is a few chunks in, none is complete
        assert all(0 < u.sent_chunks < u.chunks for u in uploads)
        proc.proc.send_signal(signal.SIGTERM)
        for upload in uploads:
            upload.join(60)
        assert proc.proc.wait(30) == 0
        for upload in uploads:
            assert upload.status == 201, upload.answer[:200]
            stored = storage_root / upload.path.removeprefix("/files/")
            assert hashlib.sha256(stored.read_bytes()).digest() == (
                hashlib.sha256(upload.body).digest()
            )
    finally:
        proc.kill()


def test_an_upload_slower_than_the_shutdown_timeout_is_cancelled_and_stores_nothing(
    storage_root: Path,
) -> None:
    proc = ServerProcess(storage_root, "--shutdown-timeout", "1")
    try:
        upload = SlowUpload(proc.port, "/files/drain/slow.bin", 100, 0.1)
        upload.start()
        time.sleep(0.5)
        started = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(30) == 0
        assert time.monotonic() - started < 10  # the timeout, the grace, then exit
        upload.join(30)
        assert upload.status != 201
        assert not (storage_root / "drain" / "slow.bin").exists()
        temp_dir = storage_root / ".artifactd" / "tmp"
        assert not temp_dir.exists() or not any(temp_dir.iterdir())
    finally:
        proc.kill()


def test_sigterm_right_after_the_readiness_line_drains_and_exits_0(storage_root: Path) -> None:
    for _ in range(3):
        proc = ServerProcess(storage_root)
        try:
            proc.proc.send_signal(signal.SIGTERM)
            assert proc.proc.wait(30) == 0, proc.stderr()
            assert "stopped" in proc.stderr()
        finally:
            proc.kill()
