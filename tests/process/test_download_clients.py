"""Download edges with real server processes and real clients: HTTP/1.0 asking for gzip
(both of aiohttp's parsers), aria2c while the file is replaced, `curl -OJ` with names a
URL cannot carry as they are."""

from __future__ import annotations

import gzip
import hashlib
import html
import os
import random
import re
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.serverproc import ServerProcess

pytestmark = pytest.mark.allow_blocking

# AIOHTTP_NO_EXTENSIONS="" counts as unset: the C parser even if the tests run with it set.
PARSERS = {"c": {"AIOHTTP_NO_EXTENSIONS": ""}, "python": {"AIOHTTP_NO_EXTENSIONS": "1"}}
NOTES = b"a compressible line of notes\n" * 400  # text/plain, well over 1 KiB
SEGMENTED_SIZE = 48 * 1024 * 1024  # 3 s at aria2c's 16 MiB/s limit: replaced meanwhile


@pytest.fixture(params=sorted(PARSERS))
def parser_server(request: pytest.FixtureRequest, storage_root: Path) -> Iterator[ServerProcess]:
    (storage_root / "notes.txt").write_bytes(NOTES)
    proc = ServerProcess(storage_root, env=PARSERS[str(request.param)])
    try:
        yield proc
    finally:
        proc.terminate()
    assert "Traceback" not in proc.stderr(), proc.stderr()[-5000:]


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one raw request; read the answer's Content-Length bytes, or to the end of the
    connection without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        pairs = (line.partition(":") for line in lines)
        headers = {name.strip().lower(): value.strip() for name, _, value in pairs}
        length = int(headers.get("content-length", "-1"))
        while (length < 0 or len(body) < length) and (chunk := sock.recv(65536)):
            body += chunk
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize("keep_alive", [False, True])
def test_http_1_0_asking_for_gzip_gets_the_file_without_chunks(
    parser_server: ServerProcess, keep_alive: bool
) -> None:
    extra = b"Connection: keep-alive\r\n" if keep_alive else b""
    raw = b"GET /files/notes.txt HTTP/1.0\r\nHost: x\r\nAccept-Encoding: gzip\r\n" + extra
    status, headers, body = exchange(parser_server.port, raw + b"\r\n")
    assert status == 200, body[:300]
    assert "transfer-encoding" not in headers
    assert headers["vary"] == "Accept-Encoding"
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    assert body == NOTES


class HoldingProxy:
    """A TCP relay to `port` that lets the first connection through at once and holds
    every later one until `release` is set: a segmented client's first answer arrives,
    then its other connections ask only once the test has replaced the file."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.accepted = 0
        self.later_connection = threading.Event()
        self.release = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            if self.accepted > 1:
                self.later_connection.set()
            threading.Thread(
                target=self._relay, args=(client, self.accepted > 1), daemon=True
            ).start()

    def _relay(self, client: socket.socket, hold: bool) -> None:
        if hold:
            self.release.wait(30)
        upstream = socket.create_connection(("127.0.0.1", self.port))
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join(60)
        client.close()
        upstream.close()

    def close(self) -> None:
        self.release.set()
        self.listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the other side went away: the client's retry logic is what is tested


def test_aria2c_segmented_download_of_a_replaced_file_fails_or_is_one_version(
    storage_root: Path, tmp_path: Path
) -> None:
    """aria2c sends `Want-Digest` and checks RFC 3230 `Digest` answers: with them it
    refuses bytes of two versions instead of splicing them and exiting 0."""
    first, second = random.randbytes(SEGMENTED_SIZE), random.randbytes(SEGMENTED_SIZE)
    (storage_root / "seg.bin").write_bytes(first)
    server = ServerProcess(storage_root)
    proxy = HoldingProxy(server.port)
    try:
        out = tmp_path / "out"
        aria2c = subprocess.Popen(
            [
                "aria2c",
                "-q",
                "-x8",
                "-s8",
                "-k1M",
                "--max-overall-download-limit=16M",
                "--max-tries=1",
                "-d",
                str(out),
                proxy.url + "/files/seg.bin",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proxy.later_connection.wait(30), "aria2c opened one connection only"
        put(server.port, "seg.bin", second)  # replaced while the first answer streams
        proxy.release.set()
        output, _ = aria2c.communicate(timeout=120)
        got = (out / "seg.bin").read_bytes() if (out / "seg.bin").exists() else b""
        versions = {sha256(first): "first", sha256(second): "second"}
        if aria2c.returncode == 0:
            assert sha256(got) in versions, "aria2c spliced two versions and exited 0"
        else:
            assert "checksum" in output.lower() or "digest" in output.lower(), output
        print(f"aria2c exit {aria2c.returncode}: {versions.get(sha256(got), 'no whole version')}")

        # Undisturbed, the same command downloads the current version whole.
        again = tmp_path / "again"
        run("aria2c", "-q", "-x8", "-s8", "-k1M", "-d", str(again), server.files_url("seg.bin"))
        assert (again / "seg.bin").read_bytes() == second
    finally:
        proxy.close()
        server.terminate()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(port: int, path: str, data: bytes) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/files/{path}", data=data, method="PUT"
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        assert answer.status in (200, 201)


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=True)


SPACED = "a b.txt"
NON_ASCII = "café ünï.txt"


def test_real_clients_save_names_a_url_cannot_carry_under_the_real_name(
    storage_root: Path, tmp_path: Path
) -> None:
    contents = {SPACED: b"a name with a space\n", NON_ASCII: "non-ASCII ✓\n".encode()}
    for name, data in contents.items():
        (storage_root / "n").mkdir(exist_ok=True)
        (storage_root / "n" / name).write_bytes(data)
    server = ServerProcess(storage_root)
    try:
        urls = {name: server.files_url("n/" + quote(name)) for name in contents}
        # curl -OJ names the file from Content-Disposition's `filename`.
        by_curl = tmp_path / "curl"
        by_curl.mkdir()
        run("curl", "-fsSOJ", urls[SPACED], cwd=by_curl)
        assert (by_curl / SPACED).read_bytes() == contents[SPACED]
        # curl (up to 8.x at least) ignores `filename*`: a non-ASCII name is saved under
        # the ASCII fallback, which is why the browse page suggests `-o NAME` for it.
        run("curl", "-fsSOJ", urls[NON_ASCII], cwd=by_curl)
        saved = sorted(set(os.listdir(by_curl)) - {SPACED})
        assert saved in ([NON_ASCII], ["cafe uni.txt"])
        assert (by_curl / saved[0]).read_bytes() == contents[NON_ASCII]

        # The browse page's own commands, run by a shell, save every name as it is.
        page = run("curl", "-fsS", server.files_url("n/")).stdout
        commands = [html.unescape(c) for c in re.findall(r"<code[^>]*>([^<]*)</code>", page)]
        by_page = tmp_path / "page"
        by_page.mkdir()
        for name in contents:
            (command,) = [c for c in commands if c.endswith("/" + quote(name))]
            subprocess.run(["sh", "-c", command], cwd=by_page, check=True, timeout=60)
        assert sorted(os.listdir(by_page)) == sorted(contents)
        for name, data in contents.items():
            assert (by_page / name).read_bytes() == data

        # wget reads `filename*` (RFC 6266, RFC 8187): the real name, byte for byte.
        by_wget = tmp_path / "wget"
        by_wget.mkdir()
        for url in urls.values():
            run("wget", "-q", "--content-disposition", url, cwd=by_wget)
        assert sorted(os.fsencode(n) for n in os.listdir(by_wget)) == sorted(
            name.encode() for name in contents
        )
        for name, data in contents.items():
            assert (by_wget / name).read_bytes() == data
    finally:
        server.terminate()
