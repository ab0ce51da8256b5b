"""`artifactd token add|ls|rm`: manage the bearer tokens of a storage root.

Exit codes as for every command: 0 success, 1 the operation failed (no such token, a name
already taken, an unreadable tokens file), 2 bad input.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import click

from artifactd.errors import InvalidValueError
from artifactd.timestamps import isoformat_utc
from artifactd.tokens import (
    SCOPES,
    DuplicateTokenError,
    TokenFileError,
    TokenInfo,
    TokenStore,
    check_name,
    normalise_prefix,
)

F = TypeVar("F", bound=Callable[..., Any])


class Decorator(Protocol):
    def __call__(self, command: F, /) -> F: ...


# Built as artifactd.cli's --root is. The main CLI passes its own root_option (which adds
# --config) to token_group(): importing artifactd.cli here would be an import cycle.
default_root_option: Decorator = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("./storage"),
    envvar="ARTIFACTD_ROOT",
    show_envvar=True,
    show_default=True,
    help="Storage root directory.",
)


def token_store(root: Path) -> TokenStore:
    if root.exists() and not root.is_dir():
        raise click.BadParameter(f"{root} is not a directory", param_hint="--root")
    return TokenStore(root)


def token_document(info: TokenInfo) -> dict[str, str | None]:
    """What `ls --json` shows of a token: never the token or its hash."""
    return {
        "name": info.name,
        "scope": info.scope,
        "prefix": None if info.prefix is None else info.prefix + "/",
        "created_at": isoformat_utc(info.created_at),
    }


def add_token(root: Path, name: str, scope: str, prefix: str | None) -> None:
    store = token_store(root)
    try:
        check_name(name)
    except InvalidValueError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from exc
    try:
        shown_prefix = None if prefix is None else normalise_prefix(prefix) + "/"
    except InvalidValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--prefix") from exc
    try:
        secret = store.add(name, scope, prefix)
    except InvalidValueError as exc:  # e.g. an admin token limited to a prefix
        raise click.UsageError(str(exc)) from exc
    except (DuplicateTokenError, TokenFileError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write the tokens file: {exc}") from exc
    click.echo(secret)  # alone on stdout: TOKEN=$(artifactd token add ...) works
    limited = f", limited to {shown_prefix}" if shown_prefix else ""
    click.echo(
        f"created {scope} token {name!r}{limited}; it is shown only now, keep it safe",
        err=True,
    )


def list_tokens(root: Path, as_json: bool) -> None:
    try:
        infos = token_store(root).list()
    except TokenFileError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps([token_document(info) for info in infos], indent=2))
        return
    if not infos:
        click.echo("no tokens (writes are accepted only from the server's own host)", err=True)
        return
    width = max(len("NAME"), *(len(info.name) for info in infos))
    click.echo(f"{'NAME':{width}}  {'SCOPE':5}  {'CREATED':20}  PREFIX")
    for info in infos:
        prefix = "(all)" if info.prefix is None else info.prefix + "/"
        created = isoformat_utc(info.created_at) or ""
        click.echo(f"{info.name:{width}}  {info.scope:5}  {created:20}  {prefix}")


def remove_token(root: Path, name: str) -> None:
    try:
        removed = token_store(root).remove(name)
    except TokenFileError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write the tokens file: {exc}") from exc
    if not removed:
        raise click.ClickException(f"no token named {name!r}")
    click.echo(f"removed token {name!r}")


def token_group(root_option: Decorator = default_root_option) -> click.Group:
    """The `token` command group; every subcommand takes `root_option`."""

    @click.group(name="token")
    def token() -> None:
        """Manage the bearer tokens clients send as `Authorization: Bearer <token>`.

        Only a hash of each token is stored, under the storage root; a running server
        picks up changes within a second.
        """

    @token.command(name="add")
    @root_option
    @click.argument("name")
    @click.option(
        "--scope",
        type=click.Choice(SCOPES),
        required=True,
        envvar="ARTIFACTD_SCOPE",
        help="read: download (with --private); write: also upload and delete; admin: all.",
    )
    @click.option(
        "--prefix",
        default=None,
        envvar="ARTIFACTD_PREFIX",
        help="Limit the token to artifacts under this path, e.g. myproj/.",
    )
    def add_command(root: Path, name: str, scope: str, prefix: str | None) -> None:
        """Create the token NAME and print it (only this once)."""
        add_token(root, name, scope, prefix)

    @token.command(name="ls")
    @root_option
    @click.option("--json", "as_json", is_flag=True, help="A JSON list of the tokens.")
    def ls_command(root: Path, as_json: bool) -> None:
        """List tokens: name, scope, prefix and creation time (never the token itself)."""
        list_tokens(root, as_json)

    @token.command(name="rm")
    @root_option
    @click.argument("name")
    def rm_command(root: Path, name: str) -> None:
        """Delete the token NAME; clients using it are refused within a second."""
        remove_token(root, name)

    return token


token = token_group()
