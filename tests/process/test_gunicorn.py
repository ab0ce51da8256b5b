"""gunicorn through `artifactd.app:serve_app` serves what `artifactd serve` serves: the same
request guards and head limits, the same access log and answers, the same drain on SIGTERM."""

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
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess, SlowDownload, SlowUpload, eventually

pytestmark = [pytest.mark.allow_blocking, pytest.mark.slow]

ENTRY_POINT = "artifactd.app:serve_app"
# gunicorn's own keep-alive, long so that a connection the server forgets is seen as held.
GUNICORN_KEEPALIVE_SECONDS = 30


class Gunicorn:
    """One gunicorn master with one aiohttp worker on a free port, its output collected."""

    def __init__(self, root: Path, tmp_path: Path, app: str = ENTRY_POINT) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.proc = subprocess.Popen(
            [
                str(gunicorn),
                app,
                "--worker-class",
                "aiohttp.GunicornUVLoopWebWorker",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--keep-alive",
                str(GUNICORN_KEEPALIVE_SECONDS),
                # Its own control socket: the default one in $HOME is shared by every gunicorn.
                "--control-socket",
                str(tmp_path / "gunicorn.ctl"),
                "--graceful-timeout",
                "20",
            ],
            env={
                **os.environ,
                "ARTIFACTD_ROOT": str(root),
                "ARTIFACTD_LOG_FORMAT": "json",
                "ARTIFACTD_SHUTDOWN_TIMEOUT": "15",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, self.text()
            time.sleep(0.1)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return "".join(self.output)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


@pytest.fixture
def gunicorn(storage_root: Path, tmp_path: Path) -> Iterator[Gunicorn]:
    (storage_root / "a.txt").write_bytes(b"hello gunicorn")
    server = Gunicorn(storage_root, tmp_path)
    try:
        yield server
    finally:
        server.stop()


def exchange(port: int, raw: bytes, timeout: float) -> tuple[bytes, float]:
    """Send `raw`, read until the server closes; returns what came and how long it took."""
    started = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pass
    return received, time.monotonic() - started


def answer_head(raw: bytes) -> tuple[int, dict[str, str]]:
    head = raw.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in head[1:])
    return int(head[0].split(" ", 2)[1]), {name.lower(): value for name, value in fields.items()}


@pytest.mark.parametrize(
    "raw",
    [
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"CONNECT \xc3\xa9.example:443 HTTP/1.1\r\nHost: x\r\n\r\ntunnel bytes",
    ],
    ids=["connect", "connect-utf8-host"],
)
def test_a_connect_is_answered_and_its_connection_closed(gunicorn: Gunicorn, raw: bytes) -> None:
    answer, seconds = exchange(gunicorn.port, raw, GUNICORN_KEEPALIVE_SECONDS + 5)
    assert seconds < 5, (seconds, answer, gunicorn.text())
    assert 400 <= answer_head(answer)[0] < 500, answer
    assert b"Traceback" not in answer
    answer, _ = exchange(
        gunicorn.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5
    )
    assert answer.startswith(b"HTTP/1.1 200")


def answer_of_serve(storage_root: Path, raw: bytes) -> bytes:
    """What `artifactd serve` on the same root answers to `raw`, for comparison."""
    serve = ServerProcess(storage_root)
    try:
        return exchange(serve.port, raw, 10)[0]
    finally:
        serve.terminate()


@pytest.mark.parametrize(
    "head",
    ["X-Big: " + "a" * 9000, "Cookie: c=" + "x" * 9000],
    ids=["9k-header", "9k-cookie"],
)
def test_an_over_long_header_line_is_refused_as_under_serve(
    gunicorn: Gunicorn, storage_root: Path, head: str
) -> None:
    raw = f"GET /files/a.txt HTTP/1.1\r\nHost: x\r\n{head}\r\nConnection: close\r\n\r\n".encode()
    answer, seconds = exchange(gunicorn.port, raw, 10)
    expected = answer_of_serve(storage_root, raw)
    assert seconds < 5
    assert answer_head(answer)[0] == answer_head(expected)[0], (answer, expected)
    assert answer_head(answer)[0] in (400, 431), answer
    assert b"Traceback" not in answer
    with urllib.request.urlopen(f"{gunicorn.url}/files/a.txt", timeout=10) as response:
        assert response.read() == b"hello gunicorn"


def test_gets_and_puts_answer_and_log_as_under_serve(
    gunicorn: Gunicorn, storage_root: Path
) -> None:
    get = b"GET /files/a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer, _ = exchange(gunicorn.port, get, 10)
    expected = answer_of_serve(storage_root, get)
    status, fields = answer_head(answer)
    expected_status, expected_fields = answer_head(expected)
    assert status == expected_status == 200
    assert answer.endswith(b"\r\n\r\nhello gunicorn")
    assert fields.keys() == expected_fields.keys()
    for name in ("etag", "content-type", "content-length", "last-modified", "accept-ranges"):
        assert fields.get(name) == expected_fields.get(name), name

    up = urllib.request.Request(f"{gunicorn.url}/files/up.bin", data=b"x" * 100, method="PUT")
    with urllib.request.urlopen(up, timeout=10) as response:
        assert response.status == 201
        assert json.loads(response.read())["size"] == 100
    assert (storage_root / "up.bin").read_bytes() == b"x" * 100

    with urllib.request.urlopen(f"{gunicorn.url}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert 'artifactd_http_requests_total{method="GET"' in metrics
    # The access log is serve's (ARTIFACTD_LOG_FORMAT=json), one line per request.
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in gunicorn.output if line.startswith("{")]
        methods = {(line.get("method"), line.get("path"), line.get("status")) for line in lines}
        if {("GET", "/files/a.txt", 200), ("PUT", "/files/up.bin", 201)} <= methods:
            break
        assert time.monotonic() < deadline, gunicorn.text()
        time.sleep(0.1)


def test_sigterm_lets_a_slow_download_and_an_upload_in_flight_finish(
    gunicorn: Gunicorn, storage_root: Path
) -> None:
    big = os.urandom(8 * 1024 * 1024)
    (storage_root / "big.bin").write_bytes(big)
    download = SlowDownload(gunicorn.port, "/files/big.bin")
    upload = SlowUpload(gunicorn.port, "/files/drain/u.bin", 40, 0.1)  # 4 s of body
    upload.start()
    time.sleep(1.0)  # a few chunks in, not complete
    assert 0 < upload.sent_chunks < upload.chunks
    gunicorn.proc.send_signal(signal.SIGTERM)

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", gunicorn.port), timeout=5).close()
        except ConnectionRefusedError:
            return True
        return False

    eventually(refused, 5)  # new connections are refused while those in flight go on
    assert upload.sent_chunks < upload.chunks
    head, body = download.finish()
    upload.join(60)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert hashlib.sha256(body).digest() == hashlib.sha256(big).digest()
    assert upload.status == 201, (upload.answer[:200], gunicorn.text())
    stored = storage_root / "drain" / "u.bin"
    assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(upload.body).digest()
    assert gunicorn.proc.wait(30) == 0, gunicorn.text()
