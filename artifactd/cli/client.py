"""Client commands for pipelines: `artifactd push`, `pull` and `wait`.

Exit codes: 0 success, 1 refused, corrupt or timed out, 2 bad input, 3 network failure
after the retries.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import aiohttp
import click

from artifactd import client
from artifactd.cli.params import DurationParam, option
from artifactd.durations import format_duration, parse_duration

T = TypeVar("T")

EXIT_TRANSFER_FAILED = 3

token_option = option(
    "--token", default=None, help="Bearer token (prefer the ARTIFACTD_TOKEN variable)."
)


def run_client(operation: Coroutine[Any, Any, T]) -> T:
    """Run one client coroutine; failures become one-line errors with documented codes."""
    try:
        return asyncio.run(operation)
    except client.RejectedError as exc:
        raise click.ClickException(str(exc)) from exc
    except client.VerificationError as exc:
        raise click.ClickException(f"verification failed: {exc}") from exc
    except client.TransferError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(EXIT_TRANSFER_FAILED) from exc
    except aiohttp.InvalidURL as exc:
        raise click.UsageError(f"invalid URL: {exc}") from exc


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
        raise click.BadParameter("must be an http:// or https:// URL", param_hint="URL")
    return url


@click.command()
@click.argument("url")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@option("--ttl", default=None, help="Retention, e.g. 7d.")
@token_option
def push(url: str, file: Path, ttl: str | None, token: str | None) -> None:
    """Upload FILE to URL (…/files/PATH) with its SHA-256; retries with backoff.

    Exit codes: 0 stored, 1 refused by the server, 2 bad input, 3 network failure."""
    check_url(url)
    if ttl is not None:
        try:
            parse_duration(ttl)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--ttl") from exc
    with byte_progress(f"pushing {file.name}", file.stat().st_size) as bar:
        document = run_client(client.push(url, file, ttl=ttl, token=token, progress=bar.update))
    click.echo(f"stored {document['path']} ({document['size']} bytes, sha256 {document['sha256']})")


@click.command()
@click.argument("url")
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
    check_url(url)
    if output is None:
        name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
        if not name or name in (".", ".."):
            raise click.UsageError("cannot name the output file from the URL; use -o FILE")
        output = Path(name)
    bar = LazyProgressBar(f"pulling {output.name}")
    try:
        run_client(client.pull(url, output, token=token, progress=bar.update, on_total=bar.start))
    finally:
        bar.finish()
    click.echo(f"saved {output}")


@click.command(name="wait")
@click.argument("url")
@option(
    "--timeout",
    "timeout",
    type=DurationParam(allow_never=False),
    required=True,
    help="Give up after this long, e.g. 10m.",
)
@token_option
def wait_command(url: str, timeout: float, token: str | None) -> None:
    """Exit 0 once the artifact at URL exists, 1 if --timeout passes first."""
    check_url(url)
    found = run_client(client.wait_for(url, timeout_seconds=timeout, token=token))
    if not found:
        click.echo(f"Error: {url} did not appear within {format_duration(timeout)}", err=True)
        raise SystemExit(1)
    click.echo(f"{url} exists")


CLIENT_COMMANDS = (push, pull, wait_command)
