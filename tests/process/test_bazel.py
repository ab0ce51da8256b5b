"""The real Bazel (Debian's `bazel-bootstrap`, offline) against `artifactd serve`, over
`/files/bazel` (Bazel's HTTP cache: `ac/` and `cas/`).

A genrule whose output is random each time it runs: after an expunged output base, only a
remote cache hit gives back the first build's bytes. The token goes as Basic in the URL or
as a Bearer header; with a read-only token Bazel gets hits and its uploads are refused.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.process.test_auth import add_token
from tests.process.test_readme_snippets import snippet
from tests.serverproc import ServerProcess

pytestmark = [pytest.mark.allow_blocking, pytest.mark.slow]

README_HOST = "artifacts.example.com:8080"
GENRULE = """\
genrule(
    name = "{name}",
    outs = ["{name}.txt"],
    cmd = "head -c 16 /dev/urandom | od -An -tx1 > $@",
)
"""


def bazel_flags(host: str, how: str, token: str) -> list[str]:
    """The cache flags, as the README gives them (checked below)."""
    if how == "basic":
        return [f"--remote_cache=http://:{token}@{host}/files/bazel"]
    return [
        f"--remote_cache=http://{host}/files/bazel",
        f"--remote_header=Authorization=Bearer {token}",
    ]


def test_the_readme_gives_these_flags() -> None:
    lines = [line for line in snippet("bazel-flags").splitlines() if line.startswith("bazel ")]
    assert [shlex.split(line)[3:] for line in lines] == [
        bazel_flags(README_HOST, "basic", "$ARTIFACTD_TOKEN"),
        bazel_flags(README_HOST, "bearer", "$ARTIFACTD_TOKEN"),
    ]


def bazel(workspace: Path, output_root: Path, *args: str) -> str:
    """One `bazel --batch` command (no server left behind); its output."""
    binary = shutil.which("bazel")
    if binary is None:
        pytest.fail("bazel is not installed: apt-get install bazel-bootstrap")
    result = subprocess.run(
        [binary, f"--output_user_root={output_root}", "--batch", *args],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stderr


def build(workspace: Path, output_root: Path, target: str, flags: list[str]) -> tuple[bytes, str]:
    """Build `target` from an expunged output base: its output and Bazel's log."""
    bazel(workspace, output_root, "clean", "--expunge")
    log = bazel(workspace, output_root, "build", f"//:{target}", *flags)
    return (workspace / "bazel-bin" / f"{target}.txt").read_bytes(), log


def refused_puts(server: ServerProcess) -> float:
    """How many PUTs the server answered with 403, from its metrics."""
    with urllib.request.urlopen(server.url.rstrip("/") + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("artifactd_http_requests_total{")
        and 'method="PUT"' in line
        and 'status="403"' in line
    )


def stored(root: Path) -> set[Path]:
    top = root / "bazel"
    return {p.relative_to(top) for p in top.rglob("*") if p.is_file()} if top.exists() else set()


@pytest.mark.parametrize("how", ["basic", "bearer"])
def test_bazel_gets_remote_hits_and_read_only_tokens_never_write(
    storage_root: Path, tmp_path: Path, how: str
) -> None:
    writer = add_token(storage_root, "ci-main-bazel", "write", "--prefix", "bazel/")
    reader = add_token(storage_root, "ci-pull-requests", "read")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "WORKSPACE").write_text("")
    (workspace / "BUILD").write_text(GENRULE.format(name="noise"))
    output_root = tmp_path / "bazel-out"
    server = ServerProcess(storage_root)
    host = f"127.0.0.1:{server.port}"
    try:
        first, log = build(workspace, output_root, "noise", bazel_flags(host, how, writer))
        assert "remote cache hit" not in log
        entries = stored(storage_root)
        assert {p.parts[0] for p in entries} == {"ac", "cas"}, entries

        second, log = build(workspace, output_root, "noise", bazel_flags(host, how, writer))
        assert "1 remote cache hit" in log, log[-2000:]
        assert second == first

        # A pull request's job with the read-only token: hits, and no upload gets through.
        readonly = bazel_flags(host, how, reader)
        third, log = build(workspace, output_root, "noise", readonly)
        assert "1 remote cache hit" in log, log[-2000:]
        assert third == first
        (workspace / "BUILD").write_text(GENRULE.format(name="noise") + GENRULE.format(name="pr"))
        refused_before = refused_puts(server)
        _, log = build(workspace, output_root, "pr", readonly)
        assert "remote cache hit" not in log
        assert (
            refused_puts(server) > refused_before
        )  # Bazel tried to upload, was refused, and went on
        assert stored(storage_root) == entries
    finally:
        server.terminate()
