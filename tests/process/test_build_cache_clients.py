"""The real `turbo` and `nx` (from npm, tests/tools/install_npm.sh) against `artifactd serve`,
configured with the README's snippets as written.

Each tool builds a one-task workspace through artifactd, its local cache and outputs are
wiped, and a second run with a read-only token must come from the remote cache with
byte-identical outputs; a changed task with that read token runs, is refused its upload,
and stores nothing.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.process.test_readme_snippets import snippet
from tests.serverproc import ServerProcess

pytestmark = [pytest.mark.allow_blocking, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / ".venv" / "node" / "node_modules"
README_HOST = "http://artifacts.example.com:8080"
# Writes a different file every run: a hit is the only way to get the first run's bytes.
BUILD_JS = """\
const fs = require("fs");
fs.mkdirSync("out", { recursive: true });
const noise = require("crypto").randomBytes(16).toString("hex");
fs.writeFileSync("out/result.txt", "built " + noise + "\\n");
"""


@pytest.fixture(scope="module")
def node_modules() -> Path:
    for tool in ("turbo", "nx"):
        if not (NODE_MODULES / tool / "package.json").is_file():
            pytest.fail(f"{tool} is not installed: run tests/tools/install_npm.sh")
    return NODE_MODULES


def add_tokens(root: Path) -> dict[str, str]:
    """Run the README's token snippet; its tokens by name."""
    tokens = {}
    for line in snippet("cache-tokens").splitlines():
        args = shlex.split(line)
        assert args[0] == "artifactd"
        result = subprocess.run(
            [sys.executable, "-m", "artifactd", *args[1:], "--root", str(root)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        tokens[args[3]] = result.stdout.strip()
    return tokens


def workspace(path: Path, node_modules: Path, tool: str, config: str, config_text: str) -> Path:
    """A workspace with one package whose `build` writes out/result.txt, the tool linked in
    as a local dependency (so `npx` finds it without the network), under git (turbo hashes
    what git tracks)."""
    (path / "packages" / "a").mkdir(parents=True)
    (path / "package.json").write_text(
        '{"name": "ws", "private": true, "packageManager": "npm@10.8.2",'
        ' "workspaces": ["packages/*"]}\n'
    )
    (path / config).write_text(config_text)
    (path / "packages" / "a" / "package.json").write_text(
        '{"name": "a", "version": "1.0.0", "scripts": {"build": "node build.js"}}\n'
    )
    (path / "packages" / "a" / "build.js").write_text(BUILD_JS)
    (path / ".gitignore").write_text("node_modules\n.turbo\n.nx\nout\n")
    (path / "node_modules" / ".bin").mkdir(parents=True)
    (path / "node_modules" / tool).symlink_to(node_modules / tool)
    (path / "node_modules" / ".bin" / tool).symlink_to((node_modules / ".bin" / tool).resolve())
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-qm", "workspace"], cwd=path, check=True)
    return path


def run_readme_snippet(
    name: str, cwd: Path, server: ServerProcess, token: str, **extra_env: str
) -> str:
    """The README snippet as written, against this server, with this token."""
    script = snippet(name).replace(README_HOST, server.url)
    home = cwd.parent / "home"  # where the tools keep caches and settings of their own
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "NX_CACHE_DIRECTORY": str(cwd / ".nx" / "cache"),
        "ARTIFACTD_TOKEN": token,
        "TURBO_TELEMETRY_DISABLED": "1",
        "DO_NOT_TRACK": "1",
        "NX_DAEMON": "false",
        "NX_NO_CLOUD": "true",
        "NX_TUI": "false",
        "NX_SKIP_NX_CACHE": "false",
        "CI": "1",
        "NO_COLOR": "1",
        "FORCE_COLOR": "0",
        "npm_config_update_notifier": "false",
        **extra_env,
    }
    result = subprocess.run(
        ["sh", "-ec", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def api_document(server: ServerProcess, path: str) -> dict[str, str]:
    with urllib.request.urlopen(f"{server.url}/api/v1/artifacts/{path}", timeout=10) as answer:
        document: dict[str, str] = json.load(answer)
    return document


def cache_metrics(server: ServerProcess, kind: str) -> dict[str, float]:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    pattern = rf'^artifactd_cache_requests_total\{{kind="{kind}",result="(\w+)"\}} (\S+)$'
    return {m[1]: float(m[2]) for m in re.finditer(pattern, text, re.M)}


def stored(root: Path, prefix: str) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / prefix).rglob("*") if p.is_file())


def wipe(ws: Path, *local: str) -> None:
    for name in (*local, "packages/a/out", "packages/a/.turbo"):
        shutil.rmtree(ws / name, ignore_errors=True)


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_turbo_remote_hits_and_a_read_token_never_writes(
    storage_root: Path, tmp_path: Path, node_modules: Path, signed: bool
) -> None:
    """Signed: turbo tags each upload (x-artifact-tag, an HMAC of the artifact) and refuses
    a download whose tag it cannot verify, so a hit proves the tag came back intact."""
    tokens = add_tokens(storage_root)
    remote_cache = ', "remoteCache": {"signature": true}' if signed else ""
    ws = workspace(
        tmp_path / "turbo",
        node_modules,
        "turbo",
        "turbo.json",
        '{"tasks": {"build": {"outputs": ["out/**"]}}' + remote_cache + "}\n",
    )
    key = {"TURBO_REMOTE_CACHE_SIGNATURE_KEY": "a shared secret"} if signed else {}

    def run_snippet(name: str, cwd: Path, server: ServerProcess, token: str) -> str:
        return run_readme_snippet(name, cwd, server, token, **key)

    server = ServerProcess(storage_root)
    try:
        first = run_snippet("turbo-env", ws, server, tokens["ci-main-turbo"])
        assert "cache miss, executing" in first, first
        built = (ws / "packages/a/out/result.txt").read_bytes()
        entries = stored(storage_root, "turbo")
        assert len(entries) == 1
        assert entries[0].startswith("turbo/web/")
        document = api_document(server, entries[0])
        assert ('; tag="' in document["content_type"]) is signed

        wipe(ws, ".turbo")
        second = run_snippet("turbo-env", ws, server, tokens["ci-pull-requests"])
        assert "cache hit, replaying logs" in second, second
        assert "FULL TURBO" in second, second
        assert (ws / "packages/a/out/result.txt").read_bytes() == built

        # A changed task under the read token: it runs, its upload is refused (403), and
        # nothing is stored.
        with (ws / "packages/a/build.js").open("a") as script:
            script.write("// changed\n")
        wipe(ws, ".turbo")
        third = run_snippet("turbo-env", ws, server, tokens["ci-pull-requests"])
        assert "cache miss, executing" in third, third
        assert stored(storage_root, "turbo") == entries
        assert cache_metrics(server, "turbo") == {"hit": 1.0, "miss": 2.0, "write": 1.0}
        assert " 403 " in "".join(server.stderr_lines)
    finally:
        server.terminate()


def test_nx_remote_hits_and_a_read_token_never_writes(
    storage_root: Path, tmp_path: Path, node_modules: Path
) -> None:
    tokens = add_tokens(storage_root)
    ws = workspace(
        tmp_path / "nx",
        node_modules,
        "nx",
        "nx.json",
        '{"targetDefaults": {"build": {"cache": true, "outputs": ["{projectRoot}/out"]}}}\n',
    )
    server = ServerProcess(storage_root)
    try:
        first = run_readme_snippet("nx-env", ws, server, tokens["ci-main-nx"])
        assert "Successfully ran target build" in first, first
        assert "read the output from the cache" not in first, first
        built = (ws / "packages/a/out/result.txt").read_bytes()
        entries = stored(storage_root, "nx")
        assert len(entries) == 1

        wipe(ws, ".nx")
        second = run_readme_snippet("nx-env", ws, server, tokens["ci-pull-requests"])
        assert "Nx read the output from the cache" in second, second
        assert "remote cache" in second, second
        assert (ws / "packages/a/out/result.txt").read_bytes() == built

        with (ws / "packages/a/build.js").open("a") as script:
            script.write("// changed\n")
        wipe(ws, ".nx")
        third = run_readme_snippet("nx-env", ws, server, tokens["ci-pull-requests"])
        assert "read the output from the cache" not in third, third
        assert stored(storage_root, "nx") == entries
        counts = cache_metrics(server, "nx")
        assert counts["hit"] == 1.0
        assert counts["miss"] == 2.0
        assert counts["write"] == 1.0
    finally:
        server.terminate()
