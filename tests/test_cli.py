"""The click CLI through CliRunner: output, exit codes, environment variables."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from artifactd.cli import main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def local_file(tmp_path: Path) -> Path:
    path = tmp_path / "build.tar.gz"
    path.write_bytes(b"artifact bytes" * 1000)
    return path


def test_init_creates_the_root_and_its_state(runner: CliRunner, tmp_path: Path) -> None:
    root = tmp_path / "new-root"
    result = runner.invoke(main, ["init", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert (root / ".artifactd" / "metadata.db").exists()
    assert "storage root ready" in result.output


def test_put_ls_du_rm_round_trip(runner: CliRunner, tmp_path: Path, local_file: Path) -> None:
    root = str(tmp_path / "root")
    put = runner.invoke(
        main, ["put", "--root", root, str(local_file), "p/1/build.tar.gz", "--ttl", "7d"]
    )
    assert put.exit_code == 0, put.output
    digest = hashlib.sha256(local_file.read_bytes()).hexdigest()
    assert digest in put.output
    assert (tmp_path / "root" / "p" / "1" / "build.tar.gz").read_bytes() == local_file.read_bytes()

    listed = runner.invoke(main, ["ls", "--root", root, "--json"])
    assert listed.exit_code == 0, listed.output
    (doc,) = json.loads(listed.output)
    assert doc["path"] == "p/1/build.tar.gz"
    assert doc["sha256"] == digest
    assert doc["expires_at"] is not None
    assert doc["content_type"] == "application/gzip"

    text = runner.invoke(main, ["ls", "--root", root, "p/"])
    assert "p/1/build.tar.gz" in text.output
    assert runner.invoke(main, ["ls", "--root", root, "q/"]).output == ""

    du = runner.invoke(main, ["du", "--root", root])
    assert du.exit_code == 0
    assert du.output.startswith("1 artifacts, ")

    rm = runner.invoke(main, ["rm", "--root", root, "p/1/build.tar.gz"])
    assert rm.exit_code == 0, rm.output
    assert not (tmp_path / "root" / "p").exists()


def test_put_replaces_atomically_and_says_so(
    runner: CliRunner, tmp_path: Path, local_file: Path
) -> None:
    root = str(tmp_path / "root")
    assert runner.invoke(main, ["put", "--root", root, str(local_file), "x"]).exit_code == 0
    again = runner.invoke(main, ["put", "--root", root, str(local_file), "x"])
    assert again.output.startswith("replaced x")


def test_rm_of_missing_artifact_exits_1(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["rm", "--root", str(tmp_path), "nope"])
    assert result.exit_code == 1
    assert "not found" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["put", "{file}", "../escape"],
        ["put", "{file}", "/abs/path"],
        ["put", "{file}", ".artifactd/x"],
        ["put", "{file}", "a/b", "--ttl", "7 weeks"],
        ["rm", "a\\b"],
        ["serve", "--port", "99999"],
        ["serve", "--chunk-size", "lots"],
        ["serve", "--loop", "trio"],
        ["serve", "--log-format", "xml"],
        ["serve", "--keepalive-timeout", "never"],
        ["nosuchcommand"],
    ],
)
def test_bad_input_exits_2_with_a_short_error(
    runner: CliRunner, tmp_path: Path, local_file: Path, args: list[str]
) -> None:
    argv = [a.replace("{file}", str(local_file)) for a in args]
    argv.insert(1, f"--root={tmp_path}") if argv[0] != "nosuchcommand" else None
    result = runner.invoke(main, argv)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "Error" in result.output


def test_flags_come_from_environment(runner: CliRunner, tmp_path: Path, local_file: Path) -> None:
    root = tmp_path / "env-root"
    result = runner.invoke(main, ["put", str(local_file), "e/x"], env={"ARTIFACTD_ROOT": str(root)})
    assert result.exit_code == 0, result.output
    assert (root / "e" / "x").exists()
    bad = runner.invoke(main, ["serve"], env={"ARTIFACTD_PORT": "notaport"})
    assert bad.exit_code == 2
