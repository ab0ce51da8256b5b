"""Tokens and rate limits against real `artifactd serve` processes and the real CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess, eventually

pytestmark = pytest.mark.allow_blocking


def artifactd(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "artifactd", *args, "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def add_token(root: Path, name: str, scope: str, *extra: str) -> str:
    result = artifactd(root, "token", "add", name, "--scope", scope, *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def request(
    url: str, method: str = "GET", data: bytes | None = None, token: str | None = None
) -> tuple[int, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return int(response.status), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


@pytest.fixture
def tokens(storage_root: Path) -> dict[str, str]:
    return {
        "read": add_token(storage_root, "reader", "read"),
        "write": add_token(storage_root, "writer", "write"),
        "myproj": add_token(storage_root, "myproj-ci", "write", "--prefix", "myproj/"),
    }


def test_tokens_made_by_the_cli_guard_a_private_server(
    storage_root: Path, tokens: dict[str, str]
) -> None:
    server = ServerProcess(storage_root, "--private")
    try:
        url = server.files_url("a/b.txt")
        status, headers = request(url, "PUT", b"x")
        assert status == 401
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert request(url, "PUT", b"x", tokens["read"])[0] == 403
        assert request(url, "PUT", b"x", tokens["write"])[0] == 201
        assert request(url)[0] == 401
        assert request(url, token=tokens["read"])[0] == 200
        assert request(server.files_url("other/x"), "PUT", b"x", tokens["myproj"])[0] == 403
        assert request(server.files_url("myproj/x"), "PUT", b"x", tokens["myproj"])[0] == 201
        assert request(f"{server.url}/healthz")[0] == 200
        assert request(f"{server.url}/metrics")[0] == 200
    finally:
        server.kill()


def test_token_add_and_rm_reach_a_running_server_without_restart(
    server: ServerProcess, storage_root: Path
) -> None:
    url = server.files_url("late.txt")
    assert request(url, "PUT", b"x")[0] == 201  # no tokens yet: loopback may write
    late = add_token(storage_root, "late", "write")
    eventually(lambda: request(url, "PUT", b"x")[0] == 401)
    assert request(url, "PUT", b"x", late)[0] == 200
    removed = artifactd(storage_root, "token", "rm", "late")
    assert removed.returncode == 0, removed.stderr
    eventually(lambda: request(url, "PUT", b"x", late)[0] == 401)


def test_expect_100_continue_without_a_token_never_gets_continue(
    storage_root: Path, tokens: dict[str, str]
) -> None:
    server = ServerProcess(storage_root)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"PUT /files/big.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            first_line = sock.makefile("rb").readline()
        assert first_line == b"HTTP/1.1 401 Unauthorized\r\n"
        assert not (storage_root / "big.bin").exists()
    finally:
        server.kill()


def test_rate_limit_answers_429_with_retry_after_and_spares_healthz(storage_root: Path) -> None:
    server = ServerProcess(storage_root, "--rate-limit", "3/min")
    try:
        statuses = [request(server.files_url())[0] for _ in range(3)]
        assert statuses == [200, 200, 200]
        status, headers = request(server.files_url())
        assert status == 429
        assert headers["Retry-After"] == "20"
        assert all(request(f"{server.url}/healthz")[0] == 200 for _ in range(5))
    finally:
        server.kill()


def test_trusted_proxy_forwarded_for_picks_the_bucket(storage_root: Path) -> None:
    server = ServerProcess(storage_root, "--rate-limit", "1/min", "--trusted-proxy", "127.0.0.0/8")
    try:

        def get(xff: str) -> int:
            req = urllib.request.Request(server.files_url(), headers={"X-Forwarded-For": xff})
            try:
                with urllib.request.urlopen(req, timeout=10) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        assert [get("198.51.100.1"), get("198.51.100.2"), get("198.51.100.1")] == [200, 200, 429]
    finally:
        server.kill()


def test_serving_on_all_interfaces_without_tokens_warns_loudly(storage_root: Path) -> None:
    server = ServerProcess(storage_root, "--host", "0.0.0.0")
    try:
        assert request(f"http://127.0.0.1:{server.port}/healthz")[0] == 200
        eventually(lambda: "WARNING" in server.stderr())
        assert "no tokens configured" in server.stderr()
        assert "artifactd token add" in server.stderr()
    finally:
        server.kill()


def test_no_warning_on_loopback(server: ServerProcess) -> None:
    assert request(f"{server.url}/healthz")[0] == 200
    assert "no tokens configured" not in server.stderr()


def test_a_corrupt_tokens_file_stops_serve_with_a_one_line_error(storage_root: Path) -> None:
    (storage_root / ".artifactd").mkdir(exist_ok=True)
    (storage_root / ".artifactd" / "tokens.json").write_text("{ not json")
    result = subprocess.run(
        [sys.executable, "-m", "artifactd", "serve", "--root", str(storage_root), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "tokens.json is corrupt" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_security_flags_exit_2(storage_root: Path) -> None:
    for flags in (["--rate-limit", "fast"], ["--rate-limit", "0/s"], ["--trusted-proxy", "nope"]):
        result = artifactd(storage_root, "serve", "--port", "0", *flags)
        assert result.returncode == 2, (flags, result.stderr)
        assert "Traceback" not in result.stderr


def test_token_file_is_0600_and_holds_no_token(storage_root: Path, tokens: dict[str, str]) -> None:
    path = storage_root / ".artifactd" / "tokens.json"
    assert os.stat(path).st_mode & 0o777 == 0o600
    text = path.read_text()
    assert all(token not in text for token in tokens.values())
    listed = artifactd(storage_root, "token", "ls")
    assert listed.returncode == 0
    assert "myproj-ci" in listed.stdout and "myproj/" in listed.stdout
    assert all(token not in listed.stdout for token in tokens.values())
