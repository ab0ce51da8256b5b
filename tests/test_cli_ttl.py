"""TTLs in the CLI: capped at 100 years from every source (exit 2), and `ls` of an expiry
stored before the cap (SPEC "Value formats")."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from artifactd.cli import main
from artifactd.store.filesystem import FilesystemStore

HUGE = "99999999999999d"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def local_file(tmp_path: Path) -> Path:
    path = tmp_path / "build.bin"
    path.write_bytes(b"bytes")
    return path


def assert_usage_error(result: Result, text: str = "longer than 100 years") -> None:
    assert result.exit_code == 2, result.output
    assert text in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("ttl", [HUGE, "99999999999999999999999d", "36526d"])
def test_put_refuses_a_ttl_over_100_years_and_stores_nothing(
    runner: CliRunner, tmp_path: Path, local_file: Path, ttl: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    result = runner.invoke(main, ["put", "--root", str(root), str(local_file), "a", "--ttl", ttl])
    assert_usage_error(result)
    assert not (root / "a").exists()


def test_put_keeps_a_ttl_of_100_years(runner: CliRunner, tmp_path: Path, local_file: Path) -> None:
    (tmp_path / "root").mkdir()
    root = str(tmp_path / "root")
    result = runner.invoke(main, ["put", "--root", root, str(local_file), "a", "--ttl", "36525d"])
    assert result.exit_code == 0, result.output


def test_push_refuses_a_ttl_over_100_years_before_connecting(
    runner: CliRunner, local_file: Path
) -> None:
    result = runner.invoke(
        main, ["push", "http://127.0.0.1:1/files/a", str(local_file), "--ttl", HUGE]
    )
    assert_usage_error(result)


# `config` resolves the options exactly as `serve` does, and exits instead of serving
# (a regression here must fail, not hang).
@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["config", "--default-ttl", HUGE], {}),
        (["config"], {"ARTIFACTD_DEFAULT_TTL": HUGE}),
        (["config", "--keepalive-timeout", HUGE], {}),
    ],
)
def test_server_options_refuse_a_duration_over_100_years(
    runner: CliRunner, tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    result = runner.invoke(main, [*args, "--root", str(tmp_path)], env=env)
    assert_usage_error(result)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ('"99999999999999d"', "longer than 100 years"),
        ("1e30", "longer than 100 years"),
        ("99999999999999999", "longer than 100 years"),
        ("inf", "longer than 100 years"),
        ("nan", "longer than 100 years"),
        ("-5", "negative"),
    ],
)
def test_a_config_file_ttl_over_100_years_or_negative_is_refused(
    runner: CliRunner, tmp_path: Path, value: str, text: str
) -> None:
    config = tmp_path / "artifactd.toml"
    config.write_text(f"default_ttl = {value}\n")
    result = runner.invoke(main, ["config", "--config", str(config)])
    assert_usage_error(result, text)


def test_a_config_file_ttl_as_a_number_of_seconds_is_kept(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = tmp_path / "artifactd.toml"
    config.write_text("default_ttl = 3600\n")
    result = runner.invoke(main, ["config", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "default_ttl" in result.output


def test_ls_shows_an_expiry_stored_before_the_cap(runner: CliRunner, tmp_path: Path) -> None:
    """`artifactd ls` crashed on an expiry past year 9999 (stored by an older server)."""
    root = tmp_path / "root"

    async def store_absurd() -> None:
        store = await FilesystemStore.create(root)
        upload = await store.begin_upload("old.bin", expires_at=8.64e18)
        await upload.write(b"old")
        await upload.commit()
        await store.close()

    asyncio.run(store_absurd())
    text = runner.invoke(main, ["ls", "--root", str(root)])
    assert text.exit_code == 0, text.output
    assert "expires 9999-12-31T23:59:59Z" in text.output
    as_json = runner.invoke(main, ["ls", "--root", str(root), "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)[0]["expires_at"] == "9999-12-31T23:59:59Z"
