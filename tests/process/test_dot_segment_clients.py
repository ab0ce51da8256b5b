"""Real clients that send `.` segments (SPEC "Artifact paths"), against a real server.

apt fetches a flat repository's files as `<base>/./Release`, and rclone's http backend asks
for `./colon:1.txt` (so the colon cannot read as a URL scheme). Both were answered 400:
apt's update failed, and rclone skipped the file and still exited 0. Needs apt-get,
apt-ftparchive (apt-utils), dpkg-deb and rclone, which `make test` installs.

Left out on purpose: a directory with a colon in its name right under `--http-url`. rclone
asks for it as `<url>./d:1/`, resolves the page's links as RFC 3986 says (`./` dropped),
then discards every link as "not under" its unresolved base: the directory looks empty,
silently, with any server (Python's http.server too). That is rclone's bug (rclone pull
request #9636). Only links that re-spell the request's `.` as `%2E` would dodge it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.serverproc import ServerProcess, eventually

pytestmark = pytest.mark.allow_blocking

# Proxy settings of the machine must not send requests for 127.0.0.1 elsewhere.
CLIENT_ENV = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    assert found, f"{name} is missing: make test installs it (see TEST_TOOLS in the Makefile)"
    return found


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, env=CLIENT_ENV)
    assert done.returncode == 0, f"{cmd[0]} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done


def assert_logged(server: ServerProcess, text: str) -> None:
    """`text` appears in the access log (written just after the answer went out)."""
    eventually(lambda: text in server.stderr(), timeout=5)


def put(server: ServerProcess, path: str, data: bytes) -> None:
    url = server.files_url(quote(path))
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method="PUT")) as answer:
        assert answer.status in (200, 201)


def build_flat_repository(work: Path) -> dict[str, bytes]:
    """A one-package flat repository (`Packages.gz`, `Release`, the .deb), as files."""
    package = work / "pkg"
    (package / "DEBIAN").mkdir(parents=True)
    (package / "DEBIAN" / "control").write_text(
        "Package: hello-artifactd\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: artifactd tests <tests@example.invalid>\nDescription: a test package\n"
    )
    (package / "usr" / "share" / "doc" / "hello-artifactd").mkdir(parents=True)
    (package / "usr" / "share" / "doc" / "hello-artifactd" / "README").write_text("hello\n")
    repo = work / "repo"
    repo.mkdir()
    deb = repo / "hello-artifactd_1.0_all.deb"
    run(tool("dpkg-deb"), "--build", "-Zgzip", str(package), str(deb))
    ftparchive = tool("apt-ftparchive")
    packages = run(ftparchive, "packages", ".", cwd=repo).stdout
    assert "Filename: ./hello-artifactd_1.0_all.deb" in packages
    (repo / "Packages").write_text(packages)
    run("gzip", "-k9n", "Packages", cwd=repo)
    # Written after the indexes it lists, and outside the directory it describes.
    release = run(ftparchive, "release", ".", cwd=repo).stdout
    (repo / "Release").write_text(release)
    return {p.name: p.read_bytes() for p in repo.iterdir()}


def test_apt_updates_from_and_downloads_out_of_a_flat_repository(
    server: ServerProcess, tmp_path: Path
) -> None:
    files = build_flat_repository(tmp_path)
    for name, data in files.items():
        put(server, f"repo/{name}", data)

    # apt's own configuration, state and cache, so nothing of the machine's is touched.
    apt = tmp_path / "apt"
    for sub in (
        "etc/apt.conf.d",
        "etc/preferences.d",
        "etc/sources.list.d",
        "state/lists/partial",
        "cache/archives/partial",
    ):
        (apt / sub).mkdir(parents=True)
    (apt / "etc" / "sources.list").write_text(f"deb [trusted=yes] {server.files_url('repo')} ./\n")
    (apt / "status").touch()
    options = [
        f"-oDir::Etc={apt / 'etc'}",
        f"-oDir::State={apt / 'state'}",
        f"-oDir::State::status={apt / 'status'}",
        f"-oDir::Cache={apt / 'cache'}",
        "-oDebug::NoLocking=1",
        "-oAPT::Sandbox::User=root",  # as root, apt would fetch as _apt, who cannot write here
        "-oAcquire::http::Proxy=DIRECT",
        "-oAcquire::Retries=0",
    ]
    apt_get = tool("apt-get")
    update = run(apt_get, *options, "update")
    assert "Err:" not in update.stdout and "E:" not in update.stderr, update
    assert_logged(server, '"GET /files/repo/./Release"')  # apt really sent the dot
    lists = {p.name for p in (apt / "state" / "lists").iterdir()}
    assert any(name.endswith("_._Packages") or "_._Packages." in name for name in lists), lists

    out = tmp_path / "out"
    out.mkdir()
    run(apt_get, *options, "download", "hello-artifactd", cwd=out)
    deb = "hello-artifactd_1.0_all.deb"
    assert (out / deb).read_bytes() == files[deb]
    assert_logged(server, f'"GET /files/repo/./{deb}"')


TREE = {
    "a.txt": b"plain\n",
    "colon:1.txt": b"a colon, which rclone asks for as ./colon:1.txt\n",
    "sp ace.txt": b"a space\n",
    "caf\u00e9.txt": b"not ascii\n",
    "pct%41.txt": b"a percent sign\n",
    "amp&x.txt": b"an ampersand\n",
    "sub/b.txt": b"in a subdirectory\n",
    "sub/deeper/c:2.bin": bytes(range(256)) * 300,
}


def test_rclone_copies_a_tree_with_every_file_byte_identical(
    server: ServerProcess, tmp_path: Path
) -> None:
    for name, data in TREE.items():
        put(server, f"tree/{name}", data)
    put(server, "elsewhere.txt", b"outside the tree\n")
    dest = tmp_path / "dest"
    run(
        tool("rclone"),
        "--config",
        str(tmp_path / "rclone.conf"),  # absent: rclone needs none for :http:
        "copy",
        "--retries",
        "1",
        "--low-level-retries",
        "1",
        "--http-url",
        server.files_url("tree/"),
        ":http:",
        str(dest),
    )
    copied = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert copied == TREE
    assert_logged(server, '"GET /files/tree/./colon:1.txt"')  # rclone really sent the dot


@pytest.mark.parametrize("parser", ["c", "python"])
def test_both_http_parsers_pass_dot_segments_through_to_be_dropped(
    storage_root: Path, parser: str
) -> None:
    """What reaches artifactd is the target as sent: neither aiohttp parser resolves or
    refuses a `.` segment first, in origin form or absolute form."""
    (storage_root / "d").mkdir()
    (storage_root / "d" / "a.txt").write_bytes(b"dotted\n")
    env = {"AIOHTTP_NO_EXTENSIONS": "1" if parser == "python" else ""}
    server = ServerProcess(storage_root, env=env)
    try:
        for target in ("/files/./d/a.txt", "/files/d/%2E/a.txt", "http://x/files/d/./a.txt"):
            status, body = raw_get(server.port, target)
            assert (status, body) == (200, b"dotted\n"), target
        status, body = raw_get(server.port, "/files/d/.?format=json")
        assert status == 200 and b'"name": "a.txt"' in body, body
        assert raw_get(server.port, "/files/d/./../../x")[0] == 400
    finally:
        server.kill()
    assert "Traceback" not in server.stderr()


def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """One GET with `target` exactly as written (HTTP clients would resolve the dots)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
