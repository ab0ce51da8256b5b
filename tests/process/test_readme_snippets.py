"""The README's CI snippets and nginx site, run as written against real processes."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess

pytestmark = [pytest.mark.allow_blocking, pytest.mark.slow]

README = Path(__file__).resolve().parents[2] / "README.md"


def snippet(name: str) -> str:
    """The fenced block that follows `<!-- snippet: name -->` in the README."""
    text = README.read_text()
    match = re.search(rf"<!-- snippet: {name} -->\n```\w*\n(.*?)```", text, re.S)
    assert match, f"README has no snippet {name!r}"
    return match.group(1)


def github_run_blocks(yaml_text: str) -> dict[str, list[str]]:
    """Job name -> its steps' shell scripts (`run: |` blocks and one-line `run:`)."""
    jobs: dict[str, list[str]] = {}
    job = ""
    lines = yaml_text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if re.fullmatch(r"  [\w-]+:", line):
            job = line.strip().rstrip(":")
            jobs[job] = []
        run = re.match(r"^(\s*)(?:- )?run: (.*)$", line)
        if run and run.group(2) == "|":
            indent = len(run.group(1)) + 2
            body = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" " * indent)):
                body.append(lines[i][indent:])
                i += 1
            jobs[job].append("\n".join(body))
            continue
        if run:
            jobs[job].append(run.group(2).split("#")[0].strip())
        i += 1
    return jobs


def gitlab_scripts(yaml_text: str) -> dict[str, list[str]]:
    jobs: dict[str, list[str]] = {}
    job = ""
    for line in yaml_text.splitlines():
        if re.fullmatch(r"[\w-]+:", line):
            job = line.rstrip(":")
            jobs[job] = []
        elif line.startswith("    - "):
            jobs[job].append(line[6:])
    return jobs


def bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a script like a CI runner: bash, exit on the first failing command."""
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def make_dist(workdir: Path) -> bytes:
    """What `make dist` stands for in the snippets: a build output called app.tar.gz."""
    data = os.urandom(512 * 1024 + 7)
    (workdir / "app.tar.gz").write_bytes(data)
    return data


@pytest.fixture
def token_server(storage_root: Path) -> Iterator[tuple[ServerProcess, str]]:
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "artifactd",
            "token",
            "add",
            "ci",
            "--scope",
            "write",
            "--root",
            str(storage_root),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    token = added.stdout.strip()
    proc = ServerProcess(storage_root)
    try:
        yield proc, token
    finally:
        proc.kill()


def test_curl_round_trip_snippet(token_server: tuple[ServerProcess, str], tmp_path: Path) -> None:
    server, token = token_server
    data = make_dist(tmp_path)
    env = {"ARTIFACTD_URL": server.url, "ARTIFACTD_TOKEN": token, "BUILD_ID": "4711"}
    result = bash(snippet("curl-round-trip"), tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "fetched.tar.gz").read_bytes() == data
    assert "fetched.tar.gz: OK" in result.stdout


def test_curl_round_trip_refuses_a_corrupted_upload(
    token_server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    server, token = token_server
    make_dist(tmp_path)
    script = snippet("curl-round-trip").replace(
        "sha=$(sha256sum app.tar.gz | cut -d' ' -f1)", f"sha={'0' * 64}"
    )
    env = {"ARTIFACTD_URL": server.url, "ARTIFACTD_TOKEN": token, "BUILD_ID": "4712"}
    result = bash(script, tmp_path, env)
    assert result.returncode != 0
    assert "400" in result.stderr


def test_github_actions_snippet(token_server: tuple[ServerProcess, str], tmp_path: Path) -> None:
    server, token = token_server
    jobs = github_run_blocks(snippet("github-actions"))
    assert list(jobs) == ["build", "deploy"]
    env = {"ARTIFACTD_URL": server.url, "ARTIFACTD_TOKEN": token, "GITHUB_RUN_ID": "99"}
    build_dir, deploy_dir = tmp_path / "build", tmp_path / "deploy"
    build_dir.mkdir()
    deploy_dir.mkdir()
    # The deploy job starts first: ?wait=300 holds it until the build has uploaded.
    deploy = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", "\n".join(jobs["deploy"])],
        cwd=deploy_dir,
        env={**os.environ, **env},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    data = make_dist(build_dir)
    for step in jobs["build"]:
        if step == "make dist":
            continue
        result = bash(step, build_dir, env)
        assert result.returncode == 0, result.stderr
    out, err = deploy.communicate(timeout=60)
    assert deploy.returncode == 0, out + err
    assert (deploy_dir / "app.tar.gz").read_bytes() == data


def test_gitlab_ci_snippet(token_server: tuple[ServerProcess, str], tmp_path: Path) -> None:
    server, token = token_server
    jobs = gitlab_scripts(snippet("gitlab-ci"))
    assert list(jobs) == ["build", "deploy"]
    env = {"ARTIFACTD_URL": server.url, "ARTIFACTD_TOKEN": token, "CI_PIPELINE_ID": "1234"}
    build_dir, deploy_dir = tmp_path / "build", tmp_path / "deploy"
    build_dir.mkdir()
    deploy_dir.mkdir()
    data = make_dist(build_dir)
    build = [line for line in jobs["build"] if line != "make dist"]
    assert bash("\n".join(build), build_dir, env).returncode == 0
    deploy = bash("\n".join(jobs["deploy"]), deploy_dir, env)
    assert deploy.returncode == 0, deploy.stderr
    assert (deploy_dir / "app.tar.gz").read_bytes() == data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nginx_site_snippet_fronts_artifactd_with_tls(storage_root: Path, tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.path.exists(nginx), "make test installs nginx"
    key, cert = tmp_path / "site.key", tmp_path / "site.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=artifacts.example.com",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    backend = ServerProcess(storage_root, "--trusted-proxy", "127.0.0.1/32")
    port = free_port()
    site = (
        snippet("nginx")
        .replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
        .replace("/etc/ssl/artifacts.pem", str(cert))
        .replace("/etc/ssl/artifacts.key", str(key))
        .replace("http://127.0.0.1:8080", backend.url)
    )
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "nginx.conf").write_text(
        "worker_processes 1;\n"
        f"pid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        f"  access_log off; client_body_temp_path {prefix}/body;\n"
        f"  proxy_temp_path {prefix}/proxy;\n" + site + "}\n"
    )
    proc = subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"https://127.0.0.1:{port}/files/via-nginx/app.bin"
        deadline = time.monotonic() + 15
        while subprocess.run(
            ["curl", "-sk", "-o", os.devnull, f"https://127.0.0.1:{port}/healthz"]
        ).returncode:
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
            time.sleep(0.1)
        data = os.urandom(3 * 1024 * 1024)
        (tmp_path / "app.bin").write_bytes(data)
        up = subprocess.run(
            ["curl", "-skf", "-T", str(tmp_path / "app.bin"), url], capture_output=True, text=True
        )
        assert up.returncode == 0, up.stderr  # a loopback write, forwarded from loopback
        down = subprocess.run(["curl", "-skf", "-r", "1000-", url], capture_output=True)
        assert hashlib.sha256(down.stdout).digest() == hashlib.sha256(data[1000:]).digest()
    finally:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(15)
        if proc.stderr is not None:
            proc.stderr.close()
        backend.kill()
