"""`artifactd push`, `pull` and `wait` against a real server, as a pipeline would run them."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess

pytestmark = pytest.mark.allow_blocking


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "artifactd", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_push_then_pull_round_trip(server: ServerProcess, tmp_path: Path) -> None:
    local = tmp_path / "app.tar.gz"
    local.write_bytes(os.urandom(2 * 1024 * 1024 + 11))
    url = server.files_url("ci/9/app.tar.gz")
    pushed = cli("push", url, str(local), "--ttl", "7d")
    assert pushed.returncode == 0, pushed.stderr
    assert hashlib.sha256(local.read_bytes()).hexdigest() in pushed.stdout

    out = tmp_path / "out"
    out.mkdir()
    pulled = cli("pull", url, cwd=out)
    assert pulled.returncode == 0, pulled.stderr
    assert (out / "app.tar.gz").read_bytes() == local.read_bytes()
    assert sorted(os.listdir(out)) == ["app.tar.gz"]


def test_pull_resumes_a_partial_download(server: ServerProcess, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024)
    local = tmp_path / "src.bin"
    local.write_bytes(data)
    url = server.files_url("resume/big.bin")
    assert cli("push", url, str(local)).returncode == 0
    head = subprocess.run(["curl", "-sSI", url], capture_output=True, text=True, check=True)
    etag = next(
        line.split(":", 1)[1].strip()
        for line in head.stdout.splitlines()
        if line.lower().startswith("etag:")
    )
    target = tmp_path / "big.bin"
    (tmp_path / "big.bin.part").write_bytes(data[:1_000_000])
    (tmp_path / "big.bin.part.etag").write_text(etag)
    pulled = cli("pull", url, "-o", str(target))
    assert pulled.returncode == 0, pulled.stderr
    assert target.read_bytes() == data
    assert not (tmp_path / "big.bin.part").exists()


def test_pull_restarts_when_the_partial_belongs_to_an_old_version(
    server: ServerProcess, tmp_path: Path
) -> None:
    data = os.urandom(1024 * 1024)
    (tmp_path / "src").write_bytes(data)
    url = server.files_url("changed.bin")
    assert cli("push", url, str(tmp_path / "src")).returncode == 0
    target = tmp_path / "changed.bin"
    (tmp_path / "changed.bin.part").write_bytes(b"stale bytes of an older version")
    (tmp_path / "changed.bin.part.etag").write_text('"0123456789abcdef0123456789abcdef"')
    assert cli("pull", url, "-o", str(target)).returncode == 0
    assert target.read_bytes() == data


def test_pull_of_missing_artifact_exits_1(server: ServerProcess, tmp_path: Path) -> None:
    result = cli("pull", server.files_url("nope.bin"), "-o", str(tmp_path / "x"))
    assert result.returncode == 1
    assert "404" in result.stderr
    assert "Traceback" not in result.stderr


def test_push_refused_exits_1(server: ServerProcess, tmp_path: Path) -> None:
    local = tmp_path / "f"
    local.write_bytes(b"x")
    result = cli("push", server.files_url(".artifactd/x"), str(local))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr


def test_wait_exits_0_once_the_artifact_appears(server: ServerProcess, tmp_path: Path) -> None:
    url = server.files_url("later/out.txt")
    waiter = subprocess.Popen(
        [sys.executable, "-m", "artifactd", "wait", url, "--timeout", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)
    assert waiter.poll() is None
    (tmp_path / "out.txt").write_text("done")
    assert cli("push", url, str(tmp_path / "out.txt")).returncode == 0
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    assert "exists" in out


def test_wait_times_out_with_exit_1(server: ServerProcess) -> None:
    result = cli("wait", server.files_url("never"), "--timeout", "1s")
    assert result.returncode == 1
    assert "did not appear" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["push", "ftp://x/files/y", "{file}"],
        ["pull", "not a url"],
        ["wait", "http://127.0.0.1:1/files/x", "--timeout", "soon"],
        ["push", "http://127.0.0.1:1/files/x", "{file}", "--ttl", "7x"],
    ],
)
def test_client_bad_input_exits_2(tmp_path: Path, args: list[str]) -> None:
    local = tmp_path / "f"
    local.write_bytes(b"x")
    result = cli(*[a.replace("{file}", str(local)) for a in args])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
