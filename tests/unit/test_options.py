"""Every option means the same whichever way it arrives: as a flag, as an ARTIFACTD_* variable
(to `artifactd config` and to gunicorn's `Settings.from_env`), or as a config-file key.

For each option of OPTIONS and a set of representative values, valid and invalid, a value
accepted one way is accepted every way with the same effective setting, and a value refused
one way is refused every way. `artifactd config` prints the effective settings as TOML.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import example, given
from hypothesis import strategies as st

import artifactd.server
from artifactd.cli import main
from artifactd.config import (
    CONFIG_KEYS,
    format_toml,
    settings_document,
    settings_from_environment,
)
from artifactd.errors import InvalidValueError
from artifactd.options import (
    SERVE,
    STORAGE,
    Boolean,
    Choice,
    Directory,
    Duration,
    Integer,
    Kind,
    Networks,
    Option,
    Rate,
    Size,
    Text,
)
from artifactd.settings import OPTIONS, OPTIONS_BY_NAME, Settings

# The drifts that made this test: gunicorn took these and `serve`/`config` refused them.
FIRST_CASES = [
    ("trusted_proxy", "10.0.0.0/8,::1"),
    ("max_size", "unlimited"),
    ("rate_limit", "off"),
]

SAMPLES: dict[type[Kind], list[str]] = {
    Size: [
        "0",
        "1048576",
        "64KiB",
        "512M",
        "1.5G",
        " 2 GiB ",
        "unlimited",
        "none",
        "-1",
        "lots",
        "1.5",
        "1KiB",
        "17MiB",
        "1023",
    ],
    Duration: [
        "0",
        "90s",
        "15m",
        "1.5h",
        "7d",
        "NEVER",
        "never",
        "-1s",
        "7 weeks",
        "inf",
        "1e3",
        "0.0001",
        "2.0005s",
    ],
    Integer: ["0", "1", "16", "256", "257", "8080", "65535", "65536", "-1", "x", "1.0", " 42 "],
    Boolean: ["1", "true", "TRUE", "yes", "on", "0", "false", "no", "off", "maybe", "2"],
    Rate: ["600/min", "5/s", "1/h", "10/sec", "off", "OFF", "none", "0/s", "5/fortnight", "lots"],
    Networks: [
        "10.0.0.0/8,::1",
        "10.0.0.0/8 ::1",
        "10.0.0.0/8, ::1",
        "::1",
        "127.0.0.1",
        "not-an-ip",
        "10.0.0.0/33",
        "10.0.0.1,,fe80::/10",
    ],
    Choice: ["nope", "TEXT", ""],
    Text: ["x", "0.0.0.0", "some prefix/", " spaced "],
    Directory: ["some/dir", "a-file"],
}

# Options whose valid values only make sense with another one set (the same way).
COMPANIONS: dict[str, dict[str, str]] = {
    "backend": {"s3_bucket": "bucket"},
    "cache_max_size": {"cache_dir": "cache"},
}


def samples(option: Option) -> list[str]:
    values = list(SAMPLES[type(option.kind)])
    if isinstance(option.kind, Choice):
        values += list(option.kind.choices)
    return values


CASES = FIRST_CASES + [
    (option.name, value)
    for option in OPTIONS
    for value in samples(option)
    if (option.name, value) not in FIRST_CASES
]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths land in tmp_path, where `a-file` is a file (not a directory)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("")
    for name in list(os.environ):
        if name.startswith("ARTIFACTD_"):
            monkeypatch.delenv(name)


Outcome = dict[str, Any] | None  # the effective settings, or None when the value is refused


def effective(output: str) -> dict[str, Any]:
    return tomllib.loads(output)


def by_flags(runner: CliRunner, values: dict[str, str]) -> Outcome:
    argv = ["config"]
    for name, value in values.items():
        option = OPTIONS_BY_NAME[name]
        if isinstance(option.kind, Boolean):
            # A switch takes no value: the text decides which spelling is given.
            try:
                on = option.kind.read(value)
            except InvalidValueError:
                return None  # no spelling of the switch says "maybe"
            argv.append(option.flag if on else f"--no-{option.flag[2:]}")
            if not on and not option.default:
                argv.pop()  # `--immutable` has no `--no-` form; off is its default
        else:
            argv += [option.flag, value]
    return run(runner, argv, {})


def by_cli_env(runner: CliRunner, values: dict[str, str]) -> Outcome:
    env = {OPTIONS_BY_NAME[name].env: value for name, value in values.items()}
    return run(runner, ["config"], env)


def by_config_file(runner: CliRunner, values: dict[str, str], tmp_path: Path) -> Outcome:
    path = tmp_path / "artifactd.toml"
    path.write_text(format_toml(values))
    return run(runner, ["config", "--config", str(path)], {})


def by_gunicorn_env(values: dict[str, str]) -> Outcome:
    try:
        settings = Settings.from_env({OPTIONS_BY_NAME[n].env: v for n, v in values.items()})
    except InvalidValueError:
        return None
    return effective(format_toml(settings_document(settings)))


def run(runner: CliRunner, argv: list[str], env: dict[str, str]) -> Outcome:
    result = runner.invoke(main, argv, env=env)
    if result.exit_code == 2:
        assert "Traceback" not in result.output
        assert "Error" in result.output
        return None
    assert result.exit_code == 0, result.output
    return effective(result.output)


@pytest.mark.parametrize(("name", "value"), CASES)
def test_a_value_means_the_same_as_flag_environment_and_config_key(
    runner: CliRunner, tmp_path: Path, name: str, value: str
) -> None:
    values = {name: value, **COMPANIONS.get(name, {})}
    outcomes = {
        "flag": by_flags(runner, values),
        "ARTIFACTD_* to the CLI": by_cli_env(runner, values),
        "ARTIFACTD_* to gunicorn": by_gunicorn_env(values),
        "config file": by_config_file(runner, values, tmp_path),
    }
    if not value.strip():
        # An empty variable counts as unset (as click reads it), so the default applies.
        outcomes.pop("ARTIFACTD_* to the CLI")
        outcomes.pop("ARTIFACTD_* to gunicorn")
    distinct = {repr(outcome) for outcome in outcomes.values()}
    assert len(distinct) == 1, outcomes


@pytest.mark.parametrize(("name", "value"), FIRST_CASES)
def test_the_values_gunicorn_took_are_taken_by_serve_and_config_too(
    runner: CliRunner, name: str, value: str
) -> None:
    expected = Settings.from_env({OPTIONS_BY_NAME[name].env: value})
    for way in (by_flags, by_cli_env):
        assert way(runner, {name: value}) == effective(format_toml(settings_document(expected)))


def test_serve_runs_with_the_values_gunicorn_took(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[Settings] = []
    monkeypatch.setattr(artifactd.server, "serve", served.append)
    env = {OPTIONS_BY_NAME[name].env: value for name, value in FIRST_CASES}
    result = runner.invoke(main, ["serve", "--root", str(tmp_path)], env=env)
    assert result.exit_code == 0, result.output
    assert served == [Settings.from_env({**env, "ARTIFACTD_ROOT": str(tmp_path)})]
    assert served[0].trusted_proxy == ("10.0.0.0/8", "::1")
    assert served[0].max_size is None and served[0].rate_limit is None


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_each_option_is_tried_with_values_it_takes_and_values_it_refuses(option: Option) -> None:
    taken = set()
    for value in samples(option):
        try:
            option.kind.read(value)
        except InvalidValueError:
            taken.add(False)
        else:
            taken.add(True)
    # Any text is a host name, bucket or prefix as far as parsing goes.
    assert taken == ({True} if isinstance(option.kind, Text) else {True, False})


def test_every_option_is_exercised_and_every_settings_field_is_an_option() -> None:
    assert {o.name for o in OPTIONS} == set(Settings.__dataclass_fields__)
    assert {o.name for o in OPTIONS} == CONFIG_KEYS
    assert {o.scope for o in OPTIONS} == {SERVE, STORAGE}
    for option in OPTIONS:
        assert samples(option), option.name
        assert option.env == "ARTIFACTD_" + option.name.upper()
        assert option.flag == "--" + option.name.replace("_", "-")


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_defaults_print_and_read_back_as_themselves(option: Option) -> None:
    assert option.kind.read(option.kind.to_toml(option.default)) == option.default
    shown = option.kind.describe(option.default)
    if shown is not None:  # what --help shows is what the flag's default is read from
        assert option.kind.read(shown) == option.default


def test_config_output_read_back_as_a_config_file_gives_the_same_settings(
    runner: CliRunner, tmp_path: Path
) -> None:
    flags = [
        "--port",
        "9000",
        "--default-ttl",
        "7d",
        "--max-size",
        "1GiB",
        "--trusted-proxy",
        "10.0.0.0/8,::1",
        "--rate-limit",
        "5/s",
        "--no-sendfile",
        "--immutable",
        "--evict-interval",
        "1.5s",
    ]
    first = runner.invoke(main, ["config", *flags])
    assert first.exit_code == 0, first.output
    path = tmp_path / "again.toml"
    path.write_text(first.output)
    again = runner.invoke(main, ["config", "--config", str(path)])
    assert again.exit_code == 0, again.output
    assert again.output == first.output


@pytest.mark.parametrize(
    ("text", "typed"),
    [
        ("port = 9000", "port = '9000'"),
        ("max_size = 1048576", "max_size = '1MiB'"),
        ("default_ttl = 90", "default_ttl = '90s'"),
        ("keepalive_timeout = 1.5", "keepalive_timeout = '1.5s'"),
        ("immutable = true", "immutable = 'yes'"),
    ],
)
def test_toml_numbers_and_booleans_mean_what_their_text_means(
    runner: CliRunner, tmp_path: Path, text: str, typed: str
) -> None:
    outputs = []
    for number, body in enumerate((text, typed)):
        path = tmp_path / f"{number}.toml"
        path.write_text(body + "\n")
        result = runner.invoke(main, ["config", "--config", str(path)])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize(
    "text",
    [
        "port = 9000.0",
        "port = true",
        "max_size = -1",
        "max_size = 1.5",
        "default_ttl = true",
        "immutable = 1",
        "trusted_proxy = 10",
    ],
)
def test_toml_values_of_the_wrong_type_are_refused_naming_the_key(
    runner: CliRunner, tmp_path: Path, text: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    result = runner.invoke(main, ["config", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert text.split(" ")[0] + " in " in result.output


def test_a_settings_field_set_in_code_obeys_its_option() -> None:
    with pytest.raises(InvalidValueError, match="port"):
        Settings(port=70000)
    with pytest.raises(InvalidValueError, match="rate_limit"):
        Settings(rate_limit="off")  # "off" is how text says None; in code it is None
    with pytest.raises(InvalidValueError, match="chunk_size"):
        Settings(chunk_size=512)


@given(st.sampled_from(OPTIONS), st.text(max_size=20))
@example(OPTIONS_BY_NAME["keepalive_timeout"], "0.0001")
def test_any_text_is_read_or_refused_with_invalid_value_error(option: Option, text: str) -> None:
    try:
        value = option.kind.read(text)
    except InvalidValueError:
        return
    # What was read prints as a config value that reads back the same.
    assert option.kind.read(option.kind.to_toml(value)) == value


def test_gunicorn_reads_the_config_file_named_by_artifactd_config_below_variables(
    tmp_path: Path,
) -> None:
    config = tmp_path / "artifactd.toml"
    config.write_text('port = 9000\nmax_size = "1GiB"\nrate_limit = "off"\n')
    settings = settings_from_environment(
        {"ARTIFACTD_CONFIG": str(config), "ARTIFACTD_PORT": "9001"}
    )
    assert settings.port == 9001  # the variable wins over the file, as with `serve`
    assert settings.max_size == 1024**3
    assert settings.rate_limit is None


def test_gunicorn_refuses_a_bad_config_file_as_serve_does(tmp_path: Path) -> None:
    config = tmp_path / "artifactd.toml"
    config.write_text("no_such_key = 1\n")
    with pytest.raises(InvalidValueError, match="no_such_key"):
        settings_from_environment({"ARTIFACTD_CONFIG": str(config)})
