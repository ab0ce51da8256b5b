"""The exception → exit-code table: every row reachable, and what a command prints for it."""

from __future__ import annotations

import aiohttp
import click
import pytest
from click.testing import CliRunner

from artifactd import client
from artifactd.cli import main
from artifactd.cli.exitcodes import (
    BAD_INPUT,
    EXIT_CODES,
    FAILED,
    NETWORK_FAILED,
    Command,
    Group,
)
from artifactd.errors import (
    ConflictError,
    InvalidPathError,
    InvalidValueError,
    NotFoundError,
    StoreUnavailableError,
)
from artifactd.store.filesystem import MetadataCorruptError
from artifactd.tokens import TokenFileError


def test_no_row_is_hidden_behind_an_earlier_row_for_its_base_class() -> None:
    for index, (kind, _, _) in enumerate(EXIT_CODES):
        earlier = [k for k, _, _ in EXIT_CODES[:index]]
        assert not any(issubclass(kind, base) for base in earlier), kind


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (InvalidPathError("'../x' is not a valid artifact path"), BAD_INPUT, "'../x' is not"),
        (InvalidValueError("invalid size 'lots'"), BAD_INPUT, "invalid size 'lots'"),
        (aiohttp.InvalidURL("http://[::1"), BAD_INPUT, "invalid URL: http://[::1"),
        (NotFoundError("a/b"), FAILED, "not found: a/b"),
        (client.RejectedError(403, "Forbidden"), FAILED, "server answered 403: Forbidden"),
        (client.VerificationError("sha256 differs"), FAILED, "verification failed: sha256"),
        (client.TransferError("giving up after 5 attempts"), NETWORK_FAILED, "giving up"),
        (ConflictError("exists"), FAILED, "exists"),
        (StoreUnavailableError("bucket unreachable"), FAILED, "bucket unreachable"),
        (TokenFileError("tokens file is corrupt"), FAILED, "tokens file is corrupt"),
        (MetadataCorruptError("metadata.db is corrupt"), FAILED, "metadata.db is corrupt"),
        (PermissionError(13, "Permission denied"), FAILED, "cannot frobnicate: [Errno 13]"),
    ],
)
def test_a_command_exits_with_the_code_and_message_of_the_table(
    error: Exception, code: int, message: str
) -> None:
    @click.group(cls=Group)
    def cli() -> None:
        pass

    @cli.command(doing="frobnicate")
    def fail() -> None:
        raise error

    result = CliRunner().invoke(cli, ["fail"])
    assert result.exit_code == code, result.output
    assert f"Error: {message}" in result.stderr
    assert ("Usage:" in result.stderr) == (code == BAD_INPUT)
    assert "Traceback" not in result.output


def test_an_exception_outside_the_table_is_not_hidden() -> None:
    @click.command(cls=Command)
    def fail() -> None:
        raise RuntimeError("a bug")

    result = CliRunner().invoke(fail, [])
    assert isinstance(result.exception, RuntimeError)


def test_every_command_goes_through_the_table() -> None:
    def commands(group: click.Group) -> list[click.Command]:
        found: list[click.Command] = []
        for command in group.commands.values():
            if isinstance(command, click.Group):
                found += commands(command)
            else:
                found.append(command)
        return found

    assert main.commands
    for command in commands(main):
        assert isinstance(command, Command), command.name
