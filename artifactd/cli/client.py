"""Client commands for pipelines: `artifactd push`, `pull` and `wait`.

Exit codes (artifactd.cli.exitcodes): 0 success, 1 refused, corrupt or timed out, 2 bad
input, 3 network failure after the retries.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import click

from artifactd import client, tuspush
from artifactd.cli.exitcodes import FAILED, Command
from artifactd.cli.options import (
    DURATION_NOT_NEVER,
    DURATION_TEXT,
    CheckedParam,
    KindParam,
    env_option,
)
from artifactd.durations import format_duration
from artifactd.errors import InvalidValueError
from artifactd.options import Size, describe_size

token_option = env_option(
    "--token", default=None, help="Bearer token (prefer the ARTIFACTD_TOKEN variable)."
)


RESUMABLE_ABOVE = 64 * 1024 * 1024
SIZE = KindParam(Size())


def byte_progress(label: str, total: int | None) -> Any:
    return click.progressbar(
        length=total, label=label, file=sys.stderr, hidden=not sys.stderr.isatty()
    )


class LazyProgressBar:
    """A progress bar on a terminal, drawn once the total size is known."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None

    def start(self, total: int) -> None:
        if self.bar is None and sys.stderr.isatty():
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()

    def update(self, n_bytes: int) -> None:
        if self.bar is not None:
            self.bar.update(n_bytes)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def check_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise InvalidValueError("must be an http:// or https:// URL")
    return url


URL = CheckedParam("url", check_url)


@click.command(cls=Command)
@click.argument("url", type=URL)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@env_option("--ttl", type=DURATION_TEXT, default=None, help="Retention, e.g. 7d.")
@token_option
@env_option(
    "--resumable-above",
    type=SIZE,
    default=describe_size(RESUMABLE_ABOVE),
    show_default=True,
    metavar=SIZE.metavar,
    help="Larger files go up in pieces (tus) and resume after a failure.",
)
def push(url: str, file: Path, ttl: str | None, token: str | None, resumable_above: int) -> None:
    """Upload FILE to URL (…/files/PATH) with its SHA-256; retries with backoff. Above
    --resumable-above, through the server's /uploads/ (a plain PUT if it has none),
    resuming from the server's offset after a dropped connection or a restart.

    Exit codes: 0 stored, 1 refused by the server, 2 bad input, 3 network failure."""

    def resumed(offset: int) -> None:
        click.echo(f"resumed the upload at byte {offset}", err=True)

    with byte_progress(f"pushing {file.name}", file.stat().st_size) as bar:
        document = asyncio.run(
            tuspush.push_file(
                url,
                file,
                resumable_above=resumable_above,
                ttl=ttl,
                token=token,
                progress=bar.update,
                on_resume=resumed,
            )
        )
    click.echo(f"stored {document['path']} ({document['size']} bytes, sha256 {document['sha256']})")


@click.command(cls=Command)
@click.argument("url", type=URL)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write (default: the last segment of the URL).",
)
@token_option
def pull(url: str, output: Path | None, token: str | None) -> None:
    """Download URL, resuming a partial download and verifying the server's digest.

    Exit codes: 0 downloaded and verified, 1 refused or corrupt, 2 bad input, 3 network."""
    if output is None:
        name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
        if not name or name in (".", ".."):
            raise click.UsageError("cannot name the output file from the URL; use -o FILE")
        output = Path(name)
    bar = LazyProgressBar(f"pulling {output.name}")
    try:
        asyncio.run(client.pull(url, output, token=token, progress=bar.update, on_total=bar.start))
    finally:
        bar.finish()
    click.echo(f"saved {output}")


@click.command(cls=Command, name="wait")
@click.argument("url", type=URL)
@env_option(
    "--timeout",
    "timeout",
    type=DURATION_NOT_NEVER,
    required=True,
    help="Give up after this long, e.g. 10m.",
)
@token_option
def wait_command(url: str, timeout: float, token: str | None) -> None:
    """Exit 0 once the artifact at URL exists, 1 if --timeout passes first."""
    found = asyncio.run(client.wait_for(url, timeout_seconds=timeout, token=token))
    if not found:
        click.echo(f"Error: {url} did not appear within {format_duration(timeout)}", err=True)
        raise click.exceptions.Exit(FAILED)
    click.echo(f"{url} exists")


CLIENT_COMMANDS = (push, pull, wait_command)
