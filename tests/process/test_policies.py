"""Per-prefix budgets against a real server and `artifactd gc` (SPEC "Lifecycle", "Policies
per path prefix"): LRU eviction inside one prefix leaves other prefixes alone."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.process.test_readme_snippets import snippet
from tests.serverproc import ServerProcess, eventually

pytestmark = pytest.mark.allow_blocking

KIB = 1024


def put(server: ServerProcess, path: str, size: int) -> None:
    request = urllib.request.Request(server.files_url(path), data=b"x" * size, method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201


def get(server: ServerProcess, path: str) -> None:
    with urllib.request.urlopen(server.files_url(path), timeout=10) as response:
        response.read()


def stored(server: ServerProcess, path: str) -> bool:
    try:
        with urllib.request.urlopen(server.files_url(path), timeout=10) as response:
            response.read()
            return True
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        return False


def files_under(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not p.relative_to(root).parts[0].startswith(".")
    }


def test_a_prefix_budget_evicts_least_recently_used_inside_it_only(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, "--policy", "cache/:max_size=2KiB", "--evict-interval", "0.2s")
    try:
        put(server, "release/v1.tar", 8 * KIB)  # far more than cache/'s budget: not its concern
        put(server, "cache/a", KIB)
        time.sleep(0.05)
        put(server, "cache/b", KIB)
        time.sleep(0.05)
        get(server, "cache/a")  # now b is the least recently used
        time.sleep(0.05)
        put(server, "cache/c", KIB)  # 3 KiB under cache/: one has to go
        eventually(lambda: not (tmp_path / "cache" / "b").exists())
        time.sleep(0.5)  # more passes change nothing
        assert stored(server, "cache/a") and stored(server, "cache/c")
        assert stored(server, "release/v1.tar")
        assert files_under(tmp_path) == {"release/v1.tar", "cache/a", "cache/c"}
    finally:
        assert server.terminate() == 0


def gc(root: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "artifactd", "gc", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_gc_applies_policies_from_flags_and_the_config_file(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    try:
        put(server, "release/v1.tar", 8 * KIB)
        for name in ("a", "b", "c"):
            put(server, f"bazel/cas/{name}", KIB)
            put(server, f"ccache/{name}", KIB)
            time.sleep(0.05)
        get(server, "bazel/cas/a")
    finally:
        assert server.terminate() == 0  # its access times are written on the way out
    out = gc(tmp_path, "--policy", "bazel/:max_size=1KiB", "--dry-run")
    assert out.splitlines()[:2] == [
        "would remove bazel/cas/b (over the max_size of bazel/)",
        "would remove bazel/cas/c (over the max_size of bazel/)",
    ]
    config = tmp_path / "artifactd.toml"
    config.write_text(
        '[[policy]]\nprefix = "bazel/"\nmax_size = "1KiB"\n\n'
        '[[policy]]\nprefix = "ccache/"\nmax_size = 2048\n'
    )
    out = gc(tmp_path, "--config", str(config))
    assert "removed 0 expired and 3 over-size artifacts" in out
    assert files_under(tmp_path) == {
        "release/v1.tar",
        "bazel/cas/a",
        "ccache/b",
        "ccache/c",
        "artifactd.toml",
    }


def test_the_readme_policy_snippets_mean_the_same(tmp_path: Path) -> None:
    """The README's flags and config file read as the policies they describe."""
    args = shlex.split(snippet("policy-flags").replace("\\\n", " "))
    assert args[:2] == ["artifactd", "serve"]
    flags = [a for a in args[2:] if a not in ("--root", "/srv/artifacts")]
    printed = subprocess.run(
        [sys.executable, "-m", "artifactd", "config", *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    policies = tomllib.loads(printed.stdout)["policy"]
    assert policies[0] == {"prefix": "release/", "ttl": "never", "immutable": True}
    config = tmp_path / "artifactd.toml"
    config.write_text(snippet("policy-config"))
    from_file = subprocess.run(
        [sys.executable, "-m", "artifactd", "config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert from_file.returncode == 0, from_file.stderr
    by_prefix = {p["prefix"]: p for p in policies}
    for table in tomllib.loads(from_file.stdout)["policy"]:
        assert table == by_prefix[table["prefix"]]
