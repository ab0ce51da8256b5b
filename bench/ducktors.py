"""ducktors' turborepo-remote-cache for `make bench`: the Turborepo cache mix's baseline
(pinned in bench/npm, installed by bench/install_npm.sh), started like the other servers."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import time
from pathlib import Path

from bench.servers import BENCH_DIR, Server, find_tool, free_port, pin_prefix

DUCKTORS_TOKEN = "bench-token"
DUCKTORS_BIN = Path(".venv/bench-node/node_modules/.bin/turborepo-remote-cache")


def find_ducktors() -> Path | None:
    """ducktors' turborepo-remote-cache as bench/install_npm.sh installs it, and node."""
    path = BENCH_DIR.parent / DUCKTORS_BIN
    return path if path.is_file() and find_tool("node") else None


def start_ducktors(name: str, binary: Path, workdir: Path, cpu: int | None) -> Server:
    """ducktors' turborepo-remote-cache, default configuration but local storage in the
    bench's workdir, on a free loopback port; ready once its status route answers."""
    storage = workdir / f"{name}-storage"
    storage.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    port = free_port()
    env = {
        **os.environ,
        "NODE_ENV": "production",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "TURBO_TOKEN": DUCKTORS_TOKEN,
        "STORAGE_PROVIDER": "local",
        "STORAGE_PATH": str(storage),
        "STORAGE_PATH_USE_TMP_FOLDER": "false",
    }
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [*pin_prefix(cpu), str(binary)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=workdir,
        )
    version = json_version(binary)
    server = Server(
        name,
        f"ducktors turborepo-remote-cache {version}, local storage, node {node_version()}",
        proc,
        f"http://127.0.0.1:{port}",
        log_path,
        "ducktors",
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                conn.request(
                    "GET",
                    "/v8/artifacts/status?slug=bench",
                    headers={"Authorization": f"Bearer {DUCKTORS_TOKEN}"},
                )
                if conn.getresponse().status == 200:
                    return server
            finally:
                conn.close()
        time.sleep(0.1)
    tail = server.log_tail()
    server.stop()
    raise RuntimeError(f"{name} did not start:\n{tail}")


def json_version(binary: Path) -> str:
    """The installed package's version (its package.json beside the bin link's target)."""
    package = binary.resolve().parent.parent / "package.json"
    try:
        return str(json.loads(package.read_text()).get("version", "?"))
    except (OSError, ValueError):
        return "?"


def node_version() -> str:
    node = find_tool("node")
    if node is None:
        return "?"
    result = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10)
    return result.stdout.strip()
