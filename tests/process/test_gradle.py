"""The real Gradle (Debian's `gradle`, 4.4.1) with its HttpBuildCache against `artifactd
serve`, over `/files/gradle/` with Basic credentials (the token as the password).

A project with one cacheable task and no dependencies: a first build fills artifactd, the
local build cache is wiped, and the second build takes the task FROM-CACHE with a
byte-identical output. With a read-only token Gradle gets hits and writes nothing. Gradle
4.4.1 turns its remote cache off under `--offline`, so the builds run without it: the
project downloads nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.process.test_auth import add_token
from tests.process.test_readme_snippets import snippet
from tests.serverproc import ServerProcess

pytestmark = [pytest.mark.allow_blocking, pytest.mark.slow]

README_URL = "https://artifacts.example.com:8080/files/gradle/"

BUILD_GRADLE = """\
@CacheableTask
class Upper extends DefaultTask {
    @InputFile
    @PathSensitive(PathSensitivity.RELATIVE)
    File source
    @OutputFile
    File target

    @TaskAction
    void run() {
        target.text = source.text.toUpperCase()
    }
}

task upper(type: Upper) {
    source = file('input.txt')
    target = file("$buildDir/upper.txt")
}
"""


def gradle_binary() -> str:
    found = shutil.which("gradle")
    if found is None:
        pytest.fail("gradle is not installed: apt-get install gradle")
    return found


def settings_gradle(url: str) -> str:
    """The README's settings.gradle with the server's URL."""
    text = snippet("gradle-settings")
    assert README_URL in text
    return "rootProject.name = 'probe'\n" + text.replace(README_URL, url)


def build(project: Path, home: Path, token: str, *, text: str) -> tuple[str, bytes]:
    """`gradle --build-cache upper` with a wiped local build cache: its output and the
    task's output file."""
    (project / "input.txt").write_text(text)
    shutil.rmtree(project / "build", ignore_errors=True)
    shutil.rmtree(home / "caches" / "build-cache-1", ignore_errors=True)
    env = {**os.environ, "GRADLE_USER_HOME": str(home), "ARTIFACTD_TOKEN": token}
    done = subprocess.run(
        [gradle_binary(), "--no-daemon", "--build-cache", "--console=plain", "upper"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, (project / "build" / "upper.txt").read_bytes()


def stored(root: Path) -> set[str]:
    top = root / "gradle"
    return {p.name for p in top.iterdir()} if top.exists() else set()


def cache_requests(port: int, result: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as answer:
        text = answer.read().decode()
    line = f'artifactd_cache_requests_total{{kind="gradle",result="{result}"}} '
    (value,) = [row[len(line) :] for row in text.splitlines() if row.startswith(line)]
    return float(value)


def test_gradle_gets_remote_hits_and_read_only_tokens_never_write(
    storage_root: Path, tmp_path: Path
) -> None:
    writer = add_token(storage_root, "ci-main-gradle", "write", "--prefix", "gradle/")
    reader = add_token(storage_root, "pr-ci", "read")
    project = tmp_path / "project"
    project.mkdir()
    home = tmp_path / "gradle-home"
    (project / "build.gradle").write_text(BUILD_GRADLE)
    server = ServerProcess(storage_root)
    try:
        (project / "settings.gradle").write_text(settings_gradle(server.files_url("gradle/")))
        out, first = build(project, home, writer, text="hello cache\n")
        assert ":upper FROM-CACHE" not in out, out
        assert first == b"HELLO CACHE\n"
        entries = stored(storage_root)
        assert len(entries) == 1, "Gradle stored nothing in artifactd"

        # A wiped local cache (a new CI machine): the task comes from artifactd.
        out, second = build(project, home, writer, text="hello cache\n")
        assert ":upper FROM-CACHE" in out, out
        assert second == first

        # A pull request's job with the read-only token: hits, and no write gets through.
        out, third = build(project, home, reader, text="hello cache\n")
        assert ":upper FROM-CACHE" in out, out
        assert third == first
        out, changed = build(project, home, reader, text="changed\n")
        assert ":upper FROM-CACHE" not in out, out
        assert changed == b"CHANGED\n"
        assert "Could not store entry" in out and "403" in out, out  # tried, refused
        assert stored(storage_root) == entries  # the refused write stored nothing

        # Counted under Gradle's own kind, from its User-Agent.
        assert cache_requests(server.port, "hit") == 2
        assert cache_requests(server.port, "miss") == 2
        assert cache_requests(server.port, "write") == 1
    finally:
        server.terminate()
