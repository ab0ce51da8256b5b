"""The `--config FILE.toml` file: one key per option of Settings (`port = 8080`,
`default_ttl = "7d"`), read by the same parsers as the flags, and `artifactd config`'s output.

Precedence, highest first: flags, ARTIFACTD_* environment variables, the config file,
built-in defaults (click's `default_map` gives exactly that order).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from artifactd.errors import InvalidValueError
from artifactd.options import Policies, values_from_env
from artifactd.settings import OPTIONS, OPTIONS_BY_NAME, Settings

CONFIG_KEYS = frozenset(option.key for option in OPTIONS)
OPTIONS_BY_KEY = {option.key: option for option in OPTIONS}


def load_config(path: Path) -> dict[str, Any]:
    """Read and check a config file: its values as written, under their option's name.

    Every value is read by its option's parser here, so a bad one is refused (naming the
    key and the file) even when the command at hand does not use it.
    """
    try:
        with path.open("rb") as f:
            values = tomllib.load(f)
    except FileNotFoundError as exc:
        raise InvalidValueError(f"config file {path} does not exist") from exc
    except UnicodeDecodeError as exc:  # TOML is UTF-8 (tomllib decodes before parsing)
        raise InvalidValueError(f"config file {path} is not UTF-8: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidValueError(f"config file {path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise InvalidValueError(f"cannot read config file {path}: {exc}") from exc
    return check_keys(values, str(path))


# The variable naming the config file, as `--config` reads it (artifactd.cli.options).
CONFIG_VARIABLE = "ARTIFACTD_CONFIG"


def settings_from_environment(environ: Mapping[str, str] | None = None) -> Settings:
    """What gunicorn runs with (it passes no flags): ARTIFACTD_* variables over the values
    of the file ARTIFACTD_CONFIG names, the precedence `serve` gives them below its flags."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_path = environ.get(CONFIG_VARIABLE)
    if config_path:
        for name, raw in load_config(Path(config_path)).items():
            option = OPTIONS_BY_NAME[name]
            values[name] = option.read(raw, f"{option.key} in {config_path}")
    values.update(values_from_env(OPTIONS, environ))
    return Settings(**values)


def check_keys(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, value in values.items():
        option = OPTIONS_BY_KEY.get(key.replace("-", "_"))
        if option is None:
            raise InvalidValueError(f"unknown key {key!r} in {source}")
        # Tables are for the [[policy]] array alone; every other key is a single value.
        tables = isinstance(option.kind, Policies) and isinstance(value, list)
        if isinstance(value, dict | list) and not tables:
            form = "[[policy]] tables" if isinstance(option.kind, Policies) else "a single value"
            raise InvalidValueError(f"key {key!r} in {source} must be {form}")
        option.read(value, f"{key} in {source}")
        checked[option.name] = value
    return checked


def settings_document(settings: Settings) -> dict[str, Any]:
    """Settings as config-file values, in the forms the options take (`7d`, not 604800)."""
    return {option.key: option.kind.to_toml(getattr(settings, option.name)) for option in OPTIONS}


def format_toml(values: Mapping[str, Any]) -> str:
    """Flat key = value lines; None becomes a comment (TOML has no null); a list of tables
    (`policy`) comes last, as `[[policy]]` tables."""
    lines = []
    tables = {key: value for key, value in values.items() if isinstance(value, list)}
    for key, value in values.items():
        if key in tables:
            if not value:
                lines.append(f"# {key} is not set")
        elif value is None:
            lines.append(f"# {key} is not set")
        elif isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value!r}")
        else:
            # A JSON string is a TOML basic string (its escapes are TOML's too).
            lines.append(f"{key} = {json.dumps(str(value), ensure_ascii=False)}")
    for key, value in tables.items():
        for table in value:
            lines.append("")
            lines.append(f"[[{key}]]")
            lines.extend(format_toml(table).splitlines())
    return "\n".join(lines) + "\n"
