"""The click CLI through CliRunner: output, exit codes, environment variables."""

from __future__ import annotations

import hashlib
import json
import sys
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


def existing_root(root: Path) -> Path:
    """A storage root as `artifactd init` leaves it (only init and serve create one)."""
    root.mkdir()
    return root


def test_init_creates_the_root_and_its_state(runner: CliRunner, tmp_path: Path) -> None:
    root = tmp_path / "new-root"
    result = runner.invoke(main, ["init", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert (root / ".artifactd" / "metadata.db").exists()
    assert "storage root ready" in result.output


def test_put_ls_du_rm_round_trip(runner: CliRunner, tmp_path: Path, local_file: Path) -> None:
    root = str(existing_root(tmp_path / "root"))
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
    root = str(existing_root(tmp_path / "root"))
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
    root = existing_root(tmp_path / "env-root")
    result = runner.invoke(main, ["put", str(local_file), "e/x"], env={"ARTIFACTD_ROOT": str(root)})
    assert result.exit_code == 0, result.output
    assert (root / "e" / "x").exists()
    bad = runner.invoke(main, ["serve"], env={"ARTIFACTD_PORT": "notaport"})
    assert bad.exit_code == 2


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "artifactd.toml"
    path.write_text(text)
    return path


def test_config_file_values_apply_and_flags_and_env_override(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = write_config(tmp_path, 'port = 9000\ndefault_ttl = "7d"\nmax-size = "1GiB"\n')
    shown = runner.invoke(main, ["config", "--config", str(config)])
    assert shown.exit_code == 0, shown.output
    assert "port = 9000" in shown.output
    assert 'default_ttl = "7d"' in shown.output
    assert f"max_size = {1024**3}" in shown.output

    by_env = runner.invoke(
        main, ["config", "--config", str(config)], env={"ARTIFACTD_PORT": "9100"}
    )
    assert "port = 9100" in by_env.output
    by_flag = runner.invoke(
        main,
        ["config", "--config", str(config), "--port", "9200"],
        env={"ARTIFACTD_PORT": "9100"},
    )
    assert "port = 9200" in by_flag.output


def test_config_file_from_environment(runner: CliRunner, tmp_path: Path) -> None:
    config = write_config(tmp_path, "immutable = true\n")
    shown = runner.invoke(main, ["config"], env={"ARTIFACTD_CONFIG": str(config)})
    assert "immutable = true" in shown.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 'blue'\n", "unknown key 'colour'"),
        ("port = \n", "not valid TOML"),
        ("port = 'many'\n", "many"),
        ("[section]\nport = 1\n", "unknown key 'section'"),
        ("port = [1, 2]\n", "single value"),
    ],
)
def test_bad_config_file_exits_2_naming_the_problem(
    runner: CliRunner, tmp_path: Path, text: str, message: str
) -> None:
    config = write_config(tmp_path, text)
    result = runner.invoke(main, ["config", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_config_keys_of_other_commands_are_accepted_by_gc(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = write_config(tmp_path, f'port = 9000\nroot = "{existing_root(tmp_path / "r")}"\n')
    result = runner.invoke(main, ["gc", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / ".artifactd").is_dir()


def test_gc_dry_run_reports_and_gc_removes_expired(
    runner: CliRunner, tmp_path: Path, local_file: Path
) -> None:
    root = str(existing_root(tmp_path / "root"))
    assert runner.invoke(main, ["put", "--root", root, str(local_file), "old", "--ttl", "0s"])
    assert runner.invoke(main, ["put", "--root", root, str(local_file), "new"]).exit_code == 0
    dry = runner.invoke(main, ["gc", "--root", root, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would remove old (expired)" in dry.output
    assert (tmp_path / "root" / "old").exists()
    real = runner.invoke(main, ["gc", "--root", root])
    assert "removed old (expired)" in real.output
    assert not (tmp_path / "root" / "old").exists()
    assert (tmp_path / "root" / "new").exists()
    sized = runner.invoke(main, ["gc", "--root", root, "--max-size", "1"])
    assert "removed new (over --max-size)" in sized.output


def test_verify_passes_on_intact_store(runner: CliRunner, tmp_path: Path, local_file: Path) -> None:
    root = str(existing_root(tmp_path / "root"))
    runner.invoke(main, ["put", "--root", root, str(local_file), "a/b"])
    result = runner.invoke(main, ["verify", "--root", root])
    assert result.exit_code == 0, result.output
    assert "all artifacts match" in result.output


@pytest.mark.parametrize(
    "command",
    [["ls"], ["du"], ["verify"], ["gc"], ["rm", "a"], ["put", "LOCAL", "a"], ["token", "ls"]],
)
def test_commands_other_than_init_refuse_a_missing_root_without_creating_it(
    runner: CliRunner, tmp_path: Path, local_file: Path, command: list[str]
) -> None:
    root = tmp_path / "mistyped"
    args = [str(local_file) if word == "LOCAL" else word for word in command]
    result = runner.invoke(main, [*args, "--root", str(root)])
    assert result.exit_code == 2, result.output
    assert f"storage root {root} does not exist" in result.output
    assert "Traceback" not in result.output
    assert not root.exists()


def test_config_file_that_is_not_utf8_exits_2_naming_it(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "artifactd.toml"
    config.write_bytes(b'port = "\xff\xfe"\n')
    result = runner.invoke(main, ["config", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert f"config file {config} is not UTF-8" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_long_gc_shows_its_evictions_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from artifactd.cli import store as store_commands
    from artifactd.store.base import ArtifactInfo

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    ticker = store_commands._EvictionTicker()
    info = ArtifactInfo("a", 1024, "application/octet-stream", 0.0, 0.0)
    for _ in range(2500):
        ticker(info, "size")
    ticker.done()
    err = capsys.readouterr().err
    assert err.count("\r") == 2
    assert err.endswith("\revicted 2000 (2 MiB)\n")


def test_ls_streams_json_and_lists_files_placed_by_hand(runner: CliRunner, tmp_path: Path) -> None:
    root = existing_root(tmp_path / "root")
    (root / "hand").mkdir()
    (root / "hand" / "b").write_bytes(b"bb")
    (root / "hand" / "a").write_bytes(b"a")
    result = runner.invoke(main, ["ls", "--root", str(root), "--json", "hand/"])
    assert result.exit_code == 0, result.output
    assert [d["path"] for d in json.loads(result.output)] == ["hand/a", "hand/b"]
    empty = runner.invoke(main, ["ls", "--root", str(root), "--json", "nothing/"])
    assert json.loads(empty.output) == []
    du = runner.invoke(main, ["du", "--root", str(root)])
    assert du.output.startswith("2 artifacts, 3 B")
