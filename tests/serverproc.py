"""A real `artifactd serve` process for tests: started on port 0, ready when it says so."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

READY = re.compile(r"listening on (http://[^/\s]+)/")


class ServerProcess:
    """Starts `python -m artifactd serve --port 0` and waits for its readiness line."""

    def __init__(
        self,
        root: Path,
        *extra_args: str,
        env: dict[str, str] | None = None,
        startup_timeout: float = 20.0,
        own_group: bool = False,
    ) -> None:
        """`own_group`: the server leads a process group of its own, which `kill_group`
        kills whole (supervisor and workers at once, as a power cut would)."""
        self.root = root
        cmd: Sequence[str] = [
            sys.executable,
            "-m",
            "artifactd",
            "serve",
            "--root",
            str(root),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *extra_args,
        ]
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            start_new_session=own_group,
        )
        self.stderr_lines: list[str] = []
        self.stdout_line = ""  # the readiness line
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()
        self.url = self._wait_ready(startup_timeout)

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def _wait_ready(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        found: list[str] = []

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                match = READY.search(line)
                if match:
                    self.stdout_line = line
                    found.append(match.group(1))
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if not found:
            self.kill()
            raise RuntimeError(
                "artifactd did not become ready; stderr:\n" + "".join(self.stderr_lines)
            )
        return found[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def files_url(self, path: str = "") -> str:
        return f"{self.url}/files/{path}"

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._close_pipes()
        return code

    def kill(self) -> None:
        """SIGKILL (if still running), reap, and release the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._close_pipes()

    def kill_group(self) -> None:
        """SIGKILL the whole process group (started with `own_group`), and reap."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._close_pipes()

    def _close_pipes(self) -> None:
        self._stderr_thread.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()

    def stderr(self) -> str:
        return "".join(self.stderr_lines)


def eventually(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll `condition` until it holds (what a real process does takes a moment); fail
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


class SlowDownload:
    """A GET read through a small socket buffer, so it stays in flight while a test does
    something else (overwrites, SIGTERM); `finish()` reads the rest."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        self.received = bytearray(self.sock.recv(64 * 1024))

    def finish(self) -> tuple[bytes, bytes]:
        """Read to the end; returns the response head and body."""
        while chunk := self.sock.recv(256 * 1024):
            self.received += chunk
        self.sock.close()
        head, _, body = bytes(self.received).partition(b"\r\n\r\n")
        return head, body


CHUNK = 64 * 1024  # a SlowUpload's piece


class SlowUpload(threading.Thread):
    """A PUT whose body trickles in `chunks` pieces, one every `interval` seconds."""

    def __init__(self, port: int, path: str, chunks: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.port, self.path, self.chunks, self.interval = port, path, chunks, interval
        self.body = bytes([len(path) % 256]) * (CHUNK * chunks)
        self.answer = b""
        self.sent_chunks = 0

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
            head = (
                f"PUT {self.path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(self.body)}\r\n\r\n"
            )
            sock.sendall(head.encode())
            try:
                for i in range(self.chunks):
                    sock.sendall(self.body[i * CHUNK : (i + 1) * CHUNK])
                    self.sent_chunks += 1
                    time.sleep(self.interval)
                while chunk := sock.recv(65536):
                    self.answer += chunk
            except OSError:
                pass  # the server cancelled us: `answer` says what it sent, if anything

    @property
    def status(self) -> int | None:
        if not self.answer.startswith(b"HTTP/1.1 "):
            return None
        return int(self.answer[9:12])
