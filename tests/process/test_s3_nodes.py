"""Real `artifactd serve --backend s3` nodes on one SeaweedFS bucket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.seaweed import (  # the fixtures register as `seaweed` and `s3_versioned_bucket`
    CREDENTIALS,
    Seaweed,
    aws_environment,
    s3_versioned_bucket_fixture,  # noqa: F401
    seaweed_fixture,  # noqa: F401
)
from tests.serverproc import ServerProcess

pytestmark = [pytest.mark.allow_blocking, pytest.mark.slow]


def node(root: Path, seaweed: Seaweed, bucket: str, *extra: str) -> ServerProcess:
    root.mkdir(exist_ok=True)
    return ServerProcess(
        root,
        "--backend",
        "s3",
        "--s3-endpoint",
        seaweed.endpoint,
        "--s3-bucket",
        bucket,
        "--s3-prefix",
        "ci/",
        *extra,
        env={**CREDENTIALS, "AWS_EC2_METADATA_DISABLED": "true"},
    )


def request(
    url: str, method: str = "GET", data: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def two_nodes(
    seaweed: Seaweed, s3_versioned_bucket: str, tmp_path: Path
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    a = node(tmp_path / "a", seaweed, s3_versioned_bucket)
    b = node(
        tmp_path / "b",
        seaweed,
        s3_versioned_bucket,
        "--cache-dir",
        str(tmp_path / "cache"),
        "--cache-max-size",
        "64MiB",
    )
    try:
        yield a, b
    finally:
        a.kill()
        b.kill()


def test_upload_through_one_node_download_through_another(
    two_nodes: tuple[ServerProcess, ServerProcess], tmp_path: Path
) -> None:
    a, b = two_nodes
    data = os.urandom(12 * 1024 * 1024 + 5)  # over one multipart part
    local = tmp_path / "app.bin"
    local.write_bytes(data)
    up = subprocess.run(
        ["curl", "-fsS", "-T", str(local), a.files_url("p/1/app.bin")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert up.returncode == 0, up.stderr
    etag = json.loads(up.stdout)["etag"]

    for _ in range(3):  # later reads on B may come from its disk cache
        status, headers, body = request(b.files_url("p/1/app.bin"))
        assert (status, headers["ETag"]) == (200, etag)
        assert body == data
    status, headers, body = request(b.files_url("p/1/app.bin"))
    out = tmp_path / "resumed.bin"
    out.write_bytes(data[:5_000_000])
    subprocess.run(
        ["curl", "-fsS", "-C", "-", "-o", str(out), b.files_url("p/1/app.bin")],
        check=True,
        timeout=120,
    )
    assert out.read_bytes() == data

    status, _, listing = request(b.files_url("p/1/?format=json"))
    assert [e["name"] for e in json.loads(listing)["entries"]] == ["app.bin"]

    assert request(a.files_url("p/1/app.bin"), "DELETE")[0] == 204
    assert request(b.files_url("p/1/app.bin"))[0] == 404


def test_verify_and_gc_work_on_the_bucket(
    seaweed: Seaweed, s3_versioned_bucket: str, tmp_path: Path
) -> None:
    a = node(tmp_path / "a", seaweed, s3_versioned_bucket)
    try:
        assert request(a.files_url("v/ok.txt"), "PUT", b"fine")[0] == 201
        assert request(a.files_url("v/old.txt?ttl=1s"), "PUT", b"old")[0] == 201
        assert a.terminate() == 0  # graceful: its maintenance lease is handed back
    finally:
        a.kill()
    time.sleep(1.1)  # let old.txt expire
    flags = [
        "--root",
        str(tmp_path / "a"),
        "--backend",
        "s3",
        "--s3-endpoint",
        seaweed.endpoint,
        "--s3-bucket",
        s3_versioned_bucket,
        "--s3-prefix",
        "ci/",
    ]
    env = {**os.environ, **CREDENTIALS, "AWS_EC2_METADATA_DISABLED": "true"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "artifactd", *args, *flags],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    verified = cli("verify")
    assert verified.returncode == 0, verified.stderr
    collected = cli("gc")
    assert collected.returncode == 0, collected.stderr
    assert "removed v/old.txt (expired)" in collected.stdout
    listed = cli("ls", "--json")
    assert [d["path"] for d in json.loads(listed.stdout)] == ["v/ok.txt"]


def test_node_killed_mid_upload_leaves_nothing_visible(
    two_nodes: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = two_nodes
    with socket.create_connection(("127.0.0.1", a.port)) as sock:
        sock.sendall(
            b"PUT /files/p/2/big.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 30000000\r\n\r\n"
        )
        chunk = b"z" * (1024 * 1024)
        for _ in range(12):  # past the first multipart part
            sock.sendall(chunk)
        time.sleep(1)  # the node is streaming parts to the bucket now
        a.proc.send_signal(signal.SIGKILL)
        a.kill()
    assert request(b.files_url("p/2/big.bin"))[0] == 404
    status, _, listing = request(b.files_url("p/2/?format=json"))
    assert status == 404 or json.loads(listing)["entries"] == []


def test_store_outage_answers_503_then_recovers_without_restart(tmp_path: Path) -> None:
    with aws_environment():
        weed = Seaweed(tmp_path / "weed")
        weed.start()
        try:
            bucket = weed.create_bucket(versioned=True)
            a = node(tmp_path / "a", weed, bucket)
            try:
                assert request(a.files_url("o/x.txt"), "PUT", b"before")[0] == 201
                weed.stop()
                status, headers, body = request(a.files_url("o/x.txt"))
                assert status == 503
                assert json.loads(body)["status"] == 503
                assert int(headers["Retry-After"]) > 0
                status, _, body = request(a.url + "/healthz")
                assert status == 503
                assert json.loads(body)["error"] == "storage unavailable"

                weed.start()
                deadline = time.monotonic() + 60
                while request(a.url + "/healthz")[0] != 200:
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
                assert request(a.files_url("o/x.txt"))[2] == b"before"
            finally:
                a.kill()
        finally:
            weed.close()
