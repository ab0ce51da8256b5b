"""The `--config FILE.toml` file: the same keys as the command-line flags.

Precedence, highest first: flags, ARTIFACTD_* environment variables, the config file,
built-in defaults (click's `default_map` gives exactly that order).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from artifactd.errors import InvalidValueError


def load_config(path: Path, known_keys: Iterable[str]) -> dict[str, Any]:
    """Read and check a config file; every key must be a flag's name (`default_ttl`)."""
    try:
        with path.open("rb") as f:
            values = tomllib.load(f)
    except FileNotFoundError as exc:
        raise InvalidValueError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidValueError(f"config file {path} is not valid TOML: {exc}") from exc
    return check_keys(values, known_keys, str(path))


def check_keys(values: Mapping[str, Any], known_keys: Iterable[str], source: str) -> dict[str, Any]:
    known = set(known_keys)
    normalised: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in known:
            raise InvalidValueError(f"unknown key {key!r} in {source}")
        if isinstance(value, dict | list):
            raise InvalidValueError(f"key {key!r} in {source} must be a single value")
        normalised[name] = value
    return normalised


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
