"""`artifactd token add|ls|rm`: manage the bearer tokens of a storage root.

Exit codes as for every command (artifactd.cli.exitcodes): 0 success, 1 the operation failed
(no such token, a name already taken, an unreadable tokens file), 2 bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from artifactd.cli.exitcodes import Command, Group
from artifactd.cli.options import CheckedParam, require_existing_root, store_options
from artifactd.timestamps import isoformat_utc
from artifactd.tokens import SCOPES, TokenInfo, TokenStore, check_name, normalise_prefix

TOKEN_NAME = CheckedParam("name", check_name)
TOKEN_PREFIX = CheckedParam("prefix", normalise_prefix, keep_text=True)


def token_document(info: TokenInfo) -> dict[str, str | None]:
    """What `ls --json` shows of a token: never the token or its hash."""
    return {
        "name": info.name,
        "scope": info.scope,
        "prefix": None if info.prefix is None else info.prefix + "/",
        "created_at": isoformat_utc(info.created_at),
    }


@click.group(cls=Group, name="token")
def token() -> None:
    """Manage the bearer tokens clients send as `Authorization: Bearer <token>`.

    Only a hash of each token is stored, under the storage root; a running server
    picks up changes within a second.
    """


@token.command(name="add", cls=Command, doing="write the tokens file")
@store_options
@click.argument("name", type=TOKEN_NAME)
@click.option(
    "--scope",
    type=click.Choice(SCOPES),
    required=True,
    envvar="ARTIFACTD_SCOPE",
    help="read: download (with --private); write: also upload and delete; admin: all.",
)
@click.option(
    "--prefix",
    type=TOKEN_PREFIX,
    default=None,
    envvar="ARTIFACTD_PREFIX",
    help="Limit the token to artifacts under this path, e.g. myproj/.",
)
def add_command(root: Path, name: str, scope: str, prefix: str | None) -> None:
    """Create the token NAME and print it (only this once)."""
    require_existing_root(root)
    secret = TokenStore(root).add(name, scope, prefix)
    click.echo(secret)  # alone on stdout: TOKEN=$(artifactd token add ...) works
    limited = f", limited to {normalise_prefix(prefix)}/" if prefix is not None else ""
    click.echo(
        f"created {scope} token {name!r}{limited}; it is shown only now, keep it safe",
        err=True,
    )


@token.command(name="ls", cls=Command, doing="read the tokens file")
@store_options
@click.option("--json", "as_json", is_flag=True, help="A JSON list of the tokens.")
def ls_command(root: Path, as_json: bool) -> None:
    """List tokens: name, scope, prefix and creation time (never the token itself)."""
    require_existing_root(root)
    infos = TokenStore(root).list()
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


@token.command(name="rm", cls=Command, doing="write the tokens file")
@store_options
@click.argument("name")
def rm_command(root: Path, name: str) -> None:
    """Delete the token NAME; clients using it are refused within a second."""
    require_existing_root(root)
    if not TokenStore(root).remove(name):
        raise click.ClickException(f"no token named {name!r}")
    click.echo(f"removed token {name!r}")
