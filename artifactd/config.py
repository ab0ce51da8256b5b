"""The `--config FILE.toml` file: one key per option of Settings (`port = 8080`,
`default_ttl = "7d"`), read by the same parsers as the flags, and `artifactd config`'s output.

Precedence, highest first: flags, ARTIFACTD_* environment variables, the config file,
built-in defaults (click's `default_map` gives exactly that order).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from artifactd.errors import InvalidValueError
from artifactd.options import values_from_env
from artifactd.settings import OPTIONS, OPTIONS_BY_NAME, Settings

CONFIG_KEYS = frozenset(option.key for option in OPTIONS)


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
            values[name] = OPTIONS_BY_NAME[name].read(raw, f"{name} in {config_path}")
    values.update(values_from_env(OPTIONS, environ))
    return Settings(**values)


def check_keys(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        option = OPTIONS_BY_NAME.get(name)
        if option is None:
            raise InvalidValueError(f"unknown key {key!r} in {source}")
        if isinstance(value, dict | list):
            raise InvalidValueError(f"key {key!r} in {source} must be a single value")
        option.read(value, f"{key} in {source}")
        checked[name] = value
    return checked


def settings_document(settings: Settings) -> dict[str, Any]:
    """Settings as config-file values, in the forms the options take (`7d`, not 604800)."""
    return {option.key: option.kind.to_toml(getattr(settings, option.name)) for option in OPTIONS}


def format_toml(values: Mapping[str, Any]) -> str:
    """Flat key = value lines; None becomes a comment (TOML has no null)."""
    lines = []
    for key, value in values.items():
        if value is None:
            lines.append(f"# {key} is not set")
        elif isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value!r}")
        else:
            escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{key} = "{escaped}"')
    return "\n".join(lines) + "\n"
