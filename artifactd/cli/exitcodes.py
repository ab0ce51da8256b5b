"""The one table from exceptions to exit codes and messages, used by every command.

Exit codes: 0 success, 1 the operation failed (not found, refused, corrupt, timed out),
2 bad input (a malformed flag, value or path), 3 network failure after the retries (client
commands). Commands raise domain errors; `Command` turns them into a one-line message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import click

from artifactd import client
from artifactd.errors import (
    AddressInUseError,
    ArtifactdError,
    InvalidPathError,
    InvalidValueError,
    NotFoundError,
)
from artifactd.store.filesystem import MetadataCorruptError

OK = 0
FAILED = 1
BAD_INPUT = 2
NETWORK_FAILED = 3

# First match wins, so a subclass comes before its base.
EXIT_CODES: tuple[tuple[type[BaseException], int, str], ...] = (
    (InvalidPathError, BAD_INPUT, ""),
    (InvalidValueError, BAD_INPUT, ""),
    (AddressInUseError, BAD_INPUT, "cannot {doing}: "),
    (aiohttp.InvalidURL, BAD_INPUT, "invalid URL: "),
    (NotFoundError, FAILED, "not found: "),
    (client.VerificationError, FAILED, "verification failed: "),
    (client.TransferError, NETWORK_FAILED, ""),
    (ArtifactdError, FAILED, ""),
    (MetadataCorruptError, FAILED, ""),
    (OSError, FAILED, "cannot {doing}: "),
)


def exit_code_of(exc: BaseException) -> tuple[int, str] | None:
    """The exit code and message prefix for `exc`, or None if it is not ours to explain."""
    for kind, code, prefix in EXIT_CODES:
        if isinstance(exc, kind):
            return code, prefix
    return None


@contextmanager
def exit_codes(doing: str | None = None) -> Iterator[None]:
    """Turn an exception of the table raised inside into its message and exit code.

    `doing` ("serve") says what failed when the operating system refuses
    (`cannot serve: [Errno 98] address already in use`).
    """
    try:
        yield
    except click.ClickException:
        raise
    except Exception as exc:
        found = exit_code_of(exc)
        if found is None:
            raise
        code, prefix = found
        if "{doing}" in prefix:
            prefix = prefix.format(doing=doing) if doing else ""
        message = f"{prefix}{exc}"
        if code == BAD_INPUT:  # with the command's usage line, as click's own errors have
            raise click.UsageError(message, click.get_current_context(silent=True)) from exc
        raise _FAILURES[code](message) from exc


class NetworkFailedError(click.ClickException):
    exit_code = NETWORK_FAILED


# click prints these as "Error: message" and exits with their exit_code.
_FAILURES: dict[int, type[click.ClickException]] = {
    FAILED: click.ClickException,
    NETWORK_FAILED: NetworkFailedError,
}


class Command(click.Command):
    """A click command whose domain errors exit through the table."""

    def __init__(self, *args: Any, doing: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.doing = doing

    def invoke(self, ctx: click.Context) -> Any:
        with exit_codes(self.doing):
            return super().invoke(ctx)


class Group(click.Group):
    """A click group whose commands (and subgroups) are `Command`s."""

    command_class = Command
    group_class = type
