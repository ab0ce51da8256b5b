"""`--workers N` and gunicorn: several processes behind one port."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess, SlowDownload, eventually

pytestmark = [pytest.mark.allow_blocking, pytest.mark.slow]


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def worker_pids(proc: ServerProcess) -> dict[int, int]:
    """Worker number -> pid of its latest start, from the supervisor's log."""
    pids: dict[int, int] = {}
    for match in re.finditer(r"worker (\d+) started \(pid (\d+)\)", proc.stderr()):
        pids[int(match.group(1))] = int(match.group(2))
    return pids


def test_workers_share_the_port_restart_when_killed_and_drain_on_sigterm(
    storage_root: Path,
) -> None:
    (storage_root / "a.txt").write_bytes(b"hello")
    proc = ServerProcess(storage_root, "--workers", "3")
    try:
        assert "3 workers" in proc.stdout_line
        for _ in range(20):
            assert fetch(proc.files_url("a.txt")) == b"hello"
        pids = worker_pids(proc)
        assert len(pids) == 3

        os.kill(pids[2], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while worker_pids(proc).get(2) == pids[2]:
            assert time.monotonic() < deadline, proc.stderr()
            time.sleep(0.1)
        assert "worker 2 (pid" in proc.stderr() and "restarting" in proc.stderr()
        for _ in range(20):
            assert fetch(proc.files_url("a.txt")) == b"hello"

        def served() -> float:
            metrics = fetch(proc.url + "/metrics").decode()
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith("artifactd_http_requests_total{")
                and 'route="/files/{tail}"' in line
                and 'status="200"' in line
            )

        # Aggregated over workers (each flushes its counts within a second), minus what the
        # killed one served.
        eventually(lambda: served() >= 40 - 20)

        assert proc.terminate() == 0
    finally:
        proc.kill()


def test_sigterm_lets_a_download_on_any_worker_finish(storage_root: Path) -> None:
    data = os.urandom(8 * 1024 * 1024)
    (storage_root / "big.bin").write_bytes(data)
    proc = ServerProcess(storage_root, "--workers", "2")
    try:
        download = SlowDownload(proc.port, "/files/big.bin")
        proc.proc.send_signal(signal.SIGTERM)
        _, body = download.finish()
        assert proc.proc.wait(30) == 0
    finally:
        proc.kill()
    assert body == data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_gunicorn_serves_the_app_factory_configured_from_environment(
    storage_root: Path, tmp_path: Path
) -> None:
    (storage_root / "g.txt").write_bytes(b"via gunicorn")
    port = free_port()
    gunicorn = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.Popen(
        [
            str(gunicorn),
            "artifactd.app:create_app()",
            "--worker-class",
            "aiohttp.GunicornUVLoopWebWorker",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            # Its own control socket: the default one in $HOME is shared by every gunicorn.
            "--control-socket",
            str(tmp_path / "gunicorn.ctl"),
            # A worker still importing the app when SIGTERM comes misses it; gunicorn then
            # waits this long for it (30 s by default).
            "--graceful-timeout",
            "5",
        ],
        env={**os.environ, "ARTIFACTD_ROOT": str(storage_root), "ARTIFACTD_MAX_RANGES": "4"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    booted = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if sum("Booting worker" in seen for seen in output) == 2:
                booted.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert booted.wait(60), "".join(output)
        deadline = time.monotonic() + 60
        while True:
            try:
                body = fetch(f"http://127.0.0.1:{port}/files/g.txt")
                break
            except OSError:
                assert time.monotonic() < deadline, "".join(output)
                time.sleep(0.1)
        assert body == b"via gunicorn"
        up = urllib.request.Request(
            f"http://127.0.0.1:{port}/files/up.bin", data=b"x" * 100, method="PUT"
        )
        with urllib.request.urlopen(up, timeout=10) as response:
            assert json.loads(response.read())["size"] == 100
        assert (storage_root / "up.bin").read_bytes() == b"x" * 100
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("second_workers", ["2", "1"])
def test_a_second_server_on_a_port_held_by_workers_fails_to_start(
    tmp_path: Path, second_workers: str
) -> None:
    """SO_REUSEPORT must not let a second server (another root) share the port: the kernel
    would split requests between two stores."""
    first_root, second_root = tmp_path / "first", tmp_path / "second"
    first_root.mkdir()
    second_root.mkdir()
    (first_root / "a.txt").write_bytes(b"first")
    proc = ServerProcess(first_root, "--workers", "2")
    try:
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "artifactd",
                "serve",
                "--root",
                str(second_root),
                "--host",
                "127.0.0.1",
                "--port",
                str(proc.port),
                "--workers",
                second_workers,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2  # bad input, as SPEC says
        assert f"127.0.0.1:{proc.port} is already in use" in second.stderr, second.stderr
        assert second.stdout == ""  # no readiness line
        for _ in range(10):
            assert fetch(proc.files_url("a.txt")) == b"first"
    finally:
        proc.terminate()  # SIGTERM: the supervisor stops its workers (kill would orphan them)


def test_workers_stop_when_their_supervisor_is_killed(storage_root: Path, tmp_path: Path) -> None:
    """An orphaned worker would keep the port, serving with nobody to restart or stop it;
    the metrics directory the killed supervisor could not remove goes with the next start."""
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {"TMPDIR": str(temp)}
    proc = ServerProcess(storage_root, "--workers", "2", env=env)
    try:
        pids = list(worker_pids(proc).values())
        assert len(pids) == 2
        os.kill(proc.proc.pid, signal.SIGKILL)
        proc.proc.wait(10)

        def gone(pid: int) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            # A zombie (exited, not yet reaped by init) is gone too.
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(") ", 1)[1].startswith("Z")

        eventually(lambda: all(gone(pid) for pid in pids), timeout=30)
        with socket.socket() as probe:  # the port is free again
            probe.bind(("127.0.0.1", proc.port))
        (abandoned,) = temp.glob("artifactd-metrics-*")

        second = ServerProcess(storage_root, "--workers", "2", env=env)
        try:
            (current,) = temp.glob("artifactd-metrics-*")
            assert current != abandoned
        finally:
            assert second.terminate() == 0  # SIGTERM: its workers stop with it
        assert list(temp.glob("artifactd-metrics-*")) == []
    finally:
        for pid in worker_pids(proc).values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
