"""The click side of OPTIONS: flags generated from Settings' options, the eager --config
that feeds the config file in as defaults, and Settings built from what a command was given.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

from artifactd.config import load_config
from artifactd.errors import InvalidPathError, InvalidValueError
from artifactd.options import SERVE, STORAGE, Boolean, Duration, Kind, Option
from artifactd.settings import OPTIONS, OPTIONS_BY_NAME, Settings

F = TypeVar("F", bound=Callable[..., Any])

STORAGE_KEY = "artifactd.storage"


class CheckedParam(click.ParamType[Any, Any]):
    """A click type whose values a library function checks (and converts): the error it
    raises for bad input becomes click's `Invalid value for '--flag'` and exit code 2."""

    def __init__(
        self,
        name: str,
        check: Callable[[Any], Any],
        keep_text: bool = False,
        metavar: str | None = None,
    ) -> None:
        self.name = name
        self.check = check
        self.keep_text = keep_text  # check the value, but pass it on as it was written
        self.metavar = metavar

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str | None:
        return self.metavar

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            checked = self.check(value)
        except (InvalidValueError, InvalidPathError) as exc:
            self.fail(str(exc), param, ctx)
        return value if self.keep_text else checked


class KindParam(CheckedParam):
    """Values read by an option kind's parser, the one flags, variables and keys share."""

    def __init__(self, kind: Kind, keep_text: bool = False) -> None:
        super().__init__(kind.metavar.lower(), kind.read, keep_text, kind.metavar)

    def split_envvar_value(self, rv: str) -> Any:
        # The whole variable goes to the kind, which splits it as gunicorn's reading does.
        return (rv,)


class BooleanParam(KindParam, click.types.BoolParamType):
    """For switches: click treats an option of a boolean type as a flag (`--immutable`,
    `--sendfile/--no-sendfile`); ARTIFACTD_* text is still read by the kind's parser."""


DURATION = KindParam(Duration())
DURATION_NOT_NEVER = KindParam(Duration(allow_never=False))
DURATION_TEXT = KindParam(Duration(), keep_text=True)  # sent on to a server as written


def env_option(*names: str, **kwargs: Any) -> Callable[[F], F]:
    """A click option that also reads ARTIFACTD_<FLAG> from the environment (for the flags
    of one command that are not Settings, e.g. `put --ttl`)."""
    flag = next(n for n in names if n.startswith("--")).split("/")[0]
    kwargs.setdefault("envvar", "ARTIFACTD_" + flag[2:].upper().replace("-", "_"))
    kwargs.setdefault("show_envvar", True)
    return click.option(*names, **kwargs)


def _settle(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Every generated flag's callback. A repeated list flag is one tuple
    (`--trusted-proxy a,b --trusted-proxy c` is (a, b, c)); a storage flag is not passed to
    the command but kept for `command_settings`, so every store command takes them all
    without listing them."""
    if param.multiple:
        # Checked again as a whole (two --policy flags may not name one prefix).
        value = param.type.convert(tuple(itertools.chain.from_iterable(value)), param, ctx)
    if not param.expose_value:
        ctx.meta.setdefault(STORAGE_KEY, {})[param.name] = value
    return value


def click_option(
    option: Option, *, help: str | None = None, to_command: bool = True
) -> Callable[[F], F]:
    """The flag of one Settings option, with its variable, default, help and parser; its
    value goes to the command as an argument, or (`to_command=False`) to `command_settings`."""
    kwargs: dict[str, Any] = {
        "default": option.default,
        "envvar": option.env,
        "show_envvar": True,
        "help": help or option.help,
        "expose_value": to_command,
        "callback": _settle,
    }
    decls = [option.flag, option.name]
    if isinstance(option.kind, Boolean):
        kwargs["type"] = BooleanParam(option.kind)
        if option.default:
            decls = [f"{option.flag}/--no-{option.flag[2:]}", option.name]
            kwargs["show_default"] = True
        else:
            kwargs["is_flag"] = True
    else:
        kwargs["type"] = KindParam(option.kind)
        kwargs["metavar"] = option.kind.metavar
        shown = option.kind.describe(option.default)
        if shown is not None:  # the default as text (`64KiB`), read back by the same parser
            kwargs["default"], kwargs["show_default"] = shown, True
    if option.kind.repeatable:
        # Repeatable; each occurrence (and the variable) may hold several, comma-separated.
        kwargs["multiple"] = True
        kwargs["default"] = [kwargs["default"]] if option.default else []
    return click.option(*decls, **kwargs)


def _apply_config_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """Eager --config: its values become defaults for the flags parsed after it."""
    if value is None:
        return
    try:
        values = load_config(value)
    except InvalidValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc
    own = {p.name: p for p in ctx.command.params}
    defaults = {}
    for name, raw in values.items():
        target = own.get(name)
        if target is not None:
            # A repeatable flag's default is a list of occurrences; the file gives one.
            defaults[name] = [raw] if getattr(target, "multiple", False) else raw
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


config_option = env_option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    is_eager=True,
    expose_value=False,
    callback=_apply_config_file,
    help='TOML file with the same keys as the flags (port = 8080, default_ttl = "7d").',
)


def _decorate(command: F, decorators: Iterable[Callable[[F], F]]) -> F:
    for decorate in reversed(list(decorators)):
        command = decorate(command)
    return command


def store_options(command: F) -> F:
    """--config, --root and the storage backend flags, which every store command takes;
    --root is passed to the command, the others are kept for `command_settings`."""
    return _decorate(
        command,
        [config_option]
        + [
            click_option(option, to_command=option.name == "root")
            for option in OPTIONS
            if option.scope == STORAGE
        ],
    )


def serve_options(command: F) -> F:
    """The flags of `serve`, shared with `config` (which prints what they resolve to)."""
    return _decorate(command, [click_option(o) for o in OPTIONS if o.scope == SERVE])


def settings_option(name: str, help: str | None = None) -> Callable[[F], F]:
    """One Settings option's flag on another command (`gc --max-size`)."""
    return click_option(OPTIONS_BY_NAME[name], help=help)


def command_settings(root: Path, **flags: Any) -> Settings:
    """Settings for what the current command was given: its storage flags and `flags`."""
    storage = click.get_current_context().meta.get(STORAGE_KEY, {})
    return Settings(root=root, **storage, **flags)


def require_existing_root(root: Path) -> None:
    """Only `init` and `serve` create a missing storage root: to any other command a missing
    one is a mistyped `--root`, refused (exit 2) rather than created empty."""
    if not root.is_dir():
        raise InvalidValueError(
            f"storage root {root} does not exist (`artifactd init --root {root}` creates one)"
        )
