"""What an option is: its kind of value, read the same way from a flag, an ARTIFACTD_*
variable and a config-file key, and the `option()` that declares one on Settings.

A kind reads text (a flag, an environment variable, a TOML string) with `from_text` and
checks a typed value (a TOML number or boolean, a Settings field set in code) with `check`;
`read` is both, so a value means the same thing whichever way it arrives.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from artifactd.durations import (
    check_duration,
    format_duration,
    parse_duration,
    parse_rate,
    parse_size,
)
from artifactd.errors import InvalidValueError
from artifactd.policies import POLICY_KEYS, SERVER_WIDE, Policy, check_policies
from artifactd.ratelimit import parse_networks

# Which commands take an option: `serve` (and `config`, which prints what serve would use),
# or every command that opens the store (the storage root and backend).
Scope = Literal["serve", "storage"]
SERVE: Scope = "serve"
STORAGE: Scope = "storage"

TomlValue = str | int | float | bool | list[dict[str, Any]]


class Kind(ABC):
    """One kind of value: how it is read from text, checked, and written back as TOML."""

    metavar = "TEXT"
    none_words: tuple[str, ...] = ()  # text meaning "not set" (None), if the option may be
    repeatable = False  # a flag given again adds values (each occurrence may hold several)

    def __init__(self, optional: bool = False) -> None:
        self.optional = optional  # None is a value (no bound, no cache, never)

    def read(self, raw: object) -> Any:
        """A flag, environment or TOML value: text is parsed first, anything else checked."""
        if isinstance(raw, str):
            if self.optional and raw.strip().lower() in self.none_words:
                return None
            raw = self.from_text(raw)
        return self.check(raw)

    def check(self, value: object) -> Any:
        """`value` if it is acceptable, else InvalidValueError saying why."""
        if value is None and self.optional:
            return None
        return self.check_value(value)

    def from_text(self, text: str) -> object:
        """The typed value `text` stands for; `check` validates it afterwards."""
        return text

    @abstractmethod
    def check_value(self, value: object) -> Any:
        """`check` for anything but an optional option's None."""

    def to_toml(self, value: Any) -> TomlValue | None:
        """The value as `artifactd config` prints it, in a form `read` takes back."""
        shown: TomlValue | None = value
        return shown

    def describe(self, value: Any) -> str | None:
        """The value as `--help` shows a default, in a form `read` takes back; None if
        there is nothing to show."""
        if value is None:
            return self.none_words[0] if self.none_words else None
        shown = self.to_toml(value)
        return None if shown == "" else str(shown)


def _check_range(value: int | float, low: float, high: float | None, show: Any = str) -> None:
    if value < low or (high is not None and value > high):
        bound = f"between {show(low)} and {show(high)}" if high is not None else f">= {show(low)}"
        raise InvalidValueError(f"{show(value)} is not {bound}")


class Text(Kind):
    def check_value(self, value: object) -> Any:
        if not isinstance(value, str):
            raise InvalidValueError(f"{value!r} is not a string")
        return value


class Choice(Kind):
    def __init__(self, *choices: str) -> None:
        super().__init__()
        self.choices = choices
        self.metavar = "[" + "|".join(choices) + "]"

    def check_value(self, value: object) -> Any:
        if value not in self.choices:
            raise InvalidValueError(f"{value!r} is not one of {', '.join(self.choices)}")
        return value


class Directory(Kind):
    """A directory path; as text it may name no directory yet, but not a file."""

    metavar = "DIR"

    def from_text(self, text: str) -> object:
        # Checked when read from a flag, variable or key, not when Settings are built in
        # code: a value object does no I/O (it may be built on the event loop).
        path = Path(text)
        if path.exists() and not path.is_dir():
            raise InvalidValueError(f"{path} is not a directory")
        return path

    def check_value(self, value: object) -> Any:
        if not isinstance(value, Path):
            raise InvalidValueError(f"{value!r} is not a path")
        return value

    def to_toml(self, value: Any) -> TomlValue | None:
        return None if value is None else str(value)


class Integer(Kind):
    metavar = "INTEGER"

    def __init__(self, low: int, high: int | None = None) -> None:
        super().__init__()
        self.low, self.high = low, high

    def from_text(self, text: str) -> object:
        try:
            return int(text.strip())
        except ValueError:
            raise InvalidValueError(f"{text!r} is not an integer") from None

    def check_value(self, value: object) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidValueError(f"{value!r} is not an integer")
        _check_range(value, self.low, self.high)
        return value


class Size(Kind):
    """Bytes, as `parse_size` reads them (`64KiB`, `1.5G`); if optional, `unlimited` or
    `none` is None."""

    metavar = "SIZE"
    none_words = ("unlimited", "none")

    def __init__(self, low: int = 0, high: int | None = None, optional: bool = False) -> None:
        super().__init__(optional)
        self.low, self.high = low, high

    def from_text(self, text: str) -> object:
        return parse_size(text)

    def check_value(self, value: object) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidValueError(f"{value!r} is not a whole number of bytes")
        _check_range(value, self.low, self.high, describe_size)
        return value

    def describe(self, value: Any) -> str | None:
        return super().describe(value) if value is None else describe_size(value)


def describe_size(n: int) -> str:
    """`64KiB`, `10GiB`: the largest unit that divides `n` exactly."""
    for power, unit in reversed(list(enumerate(("", "KiB", "MiB", "GiB", "TiB")))):
        if n and n % 1024**power == 0:
            return f"{n // 1024**power}{unit}"
    return str(n)


class Duration(Kind):
    """Seconds, as `parse_duration` reads them (`90s`, `7d`); `never` (None) where allowed."""

    metavar = "DURATION"
    none_words = ("never",)

    def __init__(self, allow_never: bool = True, positive: bool = False) -> None:
        super().__init__(optional=allow_never)
        self.positive = positive

    def from_text(self, text: str) -> object:
        seconds = parse_duration(text)
        if seconds is None:  # `never` where the option must have a duration
            raise InvalidValueError("'never' is not allowed here")
        return seconds

    def check_value(self, value: object) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidValueError(f"{value!r} is not a duration")
        if self.positive and value == 0:
            raise InvalidValueError(f"{value!r} is not a duration above 0")
        # A config file's number has the limits of a text: 0 to 100 years, NaN refused.
        return check_duration(value)

    def to_toml(self, value: Any) -> TomlValue | None:
        text = format_duration(value)
        # `7d` where it reads back exactly; plain seconds where the text would round.
        return text if value is None or parse_duration(text) == value else value


class Boolean(Kind):
    metavar = "BOOLEAN"

    def from_text(self, text: str) -> object:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise InvalidValueError(f"{text!r} is not a boolean (true/false, yes/no, on/off, 1/0)")

    def check_value(self, value: object) -> Any:
        if not isinstance(value, bool):
            raise InvalidValueError(f"{value!r} is not a boolean")
        return value

    def describe(self, value: Any) -> str | None:
        return "on" if value else "off"


class Rate(Kind):
    """`600/min` (kept as text, checked with `parse_rate`); `off` or `none` is None."""

    metavar = "N/PERIOD"
    none_words = ("off", "none")

    def from_text(self, text: str) -> object:
        return text.strip()

    def check_value(self, value: object) -> Any:
        if not isinstance(value, str):
            raise InvalidValueError(f"{value!r} is not a rate")
        parse_rate(value)
        return value


class Networks(Kind):
    """Addresses or CIDRs, separated by commas and/or spaces; a repeated flag adds more."""

    metavar = "CIDR"
    repeatable = True

    def from_text(self, text: str) -> object:
        return tuple(text.replace(",", " ").split())

    def check_value(self, value: object) -> Any:
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            raise InvalidValueError(f"{value!r} is not a list of addresses")
        parse_networks(value)
        return value

    def to_toml(self, value: Any) -> TomlValue | None:
        return " ".join(value)


class Policies(Kind):
    """Policies per path prefix (artifactd.policies). As text, `PREFIX:KEY=VALUE,...`;
    several are separated by `;` or newlines (a repeated flag adds more). In a config file,
    `[[policy]]` tables with `prefix` and the same keys (TOML numbers and booleans allowed,
    as for the options they resemble)."""

    metavar = "PREFIX:KEY=VALUE,..."
    repeatable = True
    # How each key's value is read: as the server-wide option it stands in for.
    keys: ClassVar[dict[str, Kind]] = {
        "ttl": Duration(),
        "max_ttl": Duration(positive=True),
        "max_size": Size(optional=True),
        "immutable": Boolean(),
    }

    def read(self, raw: object) -> Any:
        if isinstance(raw, list):  # a config file's [[policy]] tables
            raw = tuple(self.from_table(table) for table in raw)
        return super().read(raw)

    def from_text(self, text: str) -> object:
        return tuple(
            self.one_from_text(part.strip())
            for part in text.replace("\n", ";").split(";")
            if part.strip()
        )

    def one_from_text(self, text: str) -> Policy:
        prefix, colon, pairs = text.rpartition(":")
        if not colon:
            raise InvalidValueError(f"{text!r} is not PREFIX:KEY=VALUE,...")
        table: dict[str, object] = {"prefix": prefix.strip()}
        for pair in pairs.split(","):
            key, equals, value = pair.partition("=")
            key = key.strip()
            if not equals:
                raise InvalidValueError(f"{pair.strip()!r} in {text!r} is not KEY=VALUE")
            if key.replace("-", "_") in table:
                raise InvalidValueError(f"{key!r} is given twice in {text!r}")
            table[key.replace("-", "_")] = value.strip()
        return self.from_table(table)

    def from_table(self, table: object) -> Policy:
        if not isinstance(table, dict):
            raise InvalidValueError(f"{table!r} is not a policy table")
        table = {str(key).replace("-", "_"): value for key, value in table.items()}
        if "prefix" not in table:
            raise InvalidValueError(f"policy {table!r} has no prefix")
        prefix = table.pop("prefix")
        where = f"policy {prefix!r}"
        if not table:
            raise InvalidValueError(f"{where} sets none of {', '.join(POLICY_KEYS)}")
        values: dict[str, Any] = {}
        for key, raw in table.items():
            kind = self.keys.get(key)
            if kind is None:
                raise InvalidValueError(
                    f"{where}: unknown key {key!r} (keys: {', '.join(POLICY_KEYS)})"
                )
            try:
                values[key] = kind.read(raw)
            except InvalidValueError as exc:
                raise InvalidValueError(f"{where}: {key}: {exc}") from None
        if not isinstance(prefix, str):
            raise InvalidValueError(f"{where}: the prefix is not a string")
        return Policy(prefix, **values)

    def check_value(self, value: object) -> Any:
        return check_policies(value)

    def to_toml(self, value: Any) -> TomlValue | None:
        return [self.to_table(policy) for policy in value]

    def to_table(self, policy: Policy) -> dict[str, Any]:
        table: dict[str, Any] = {"prefix": policy.prefix}
        for key in POLICY_KEYS:
            given = getattr(policy, key)
            if given is SERVER_WIDE or (given is None and key in ("max_ttl", "max_size")):
                continue
            kind = self.keys[key]
            table[key] = kind.describe(given) if isinstance(kind, Size) else kind.to_toml(given)
        return table

    def to_text(self, policy: Policy) -> str:
        """The policy as a flag takes it."""
        table = self.to_table(policy)
        prefix = table.pop("prefix")
        shown = ("true" if v is True else "false" if v is False else v for v in table.values())
        return f"{prefix}:" + ",".join(f"{k}={v}" for k, v in zip(table, shown, strict=True))

    def describe(self, value: Any) -> str | None:
        return "; ".join(self.to_text(policy) for policy in value) or None


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of Settings: its flag, ARTIFACTD_* variable and config key follow its name."""

    name: str
    kind: Kind
    default: Any
    help: str
    scope: Scope
    # The flag, variable and key spell the name so (`--policy` for the field `policies`).
    spelling: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def env(self) -> str:
        return "ARTIFACTD_" + self.key.upper()

    @property
    def key(self) -> str:
        """Its key in the config file (a dash spelling, `max-size`, is read as the same)."""
        return self.spelling or self.name

    def read(self, raw: object, source: str) -> Any:
        """The value `raw` (text or a TOML value) stands for; InvalidValueError names
        `source` (a flag, variable or config key)."""
        try:
            return self.kind.read(raw)
        except InvalidValueError as exc:
            raise InvalidValueError(f"{source}: {exc}") from exc

    def check(self, value: object) -> None:
        """Refuse a typed value (a Settings field) that no flag, variable or key could give."""
        try:
            self.kind.check(value)
        except InvalidValueError as exc:
            raise InvalidValueError(f"{self.name}: {exc}") from exc


def option(
    kind: Kind, help: str, scope: Scope = SERVE, spelling: str | None = None
) -> dict[str, Any]:
    """The metadata that makes a Settings field an option:
    `port: int = field(default=8080, metadata=option(Integer(0, 65535), "Port to bind."))`."""
    return {"option": {"kind": kind, "help": help, "scope": scope, "spelling": spelling}}


def options_of(settings_class: type[Any]) -> tuple[Option, ...]:
    """The options declared with `option()` on a dataclass, in field order."""
    return tuple(
        Option(name=f.name, default=f.default, **f.metadata["option"])
        for f in dataclasses.fields(settings_class)
    )


def values_from_env(options: Sequence[Option], environ: Mapping[str, str]) -> dict[str, Any]:
    """The values ARTIFACTD_* variables set; an empty variable counts as unset, as for flags."""
    return {
        option.name: option.read(environ[option.env], option.env)
        for option in options
        if environ.get(option.env)
    }
