"""The `artifactd` command line: the click group and where its commands come from.

Modules by job: options (flags generated from artifactd.settings.OPTIONS), exitcodes (the
exception → exit-code table every command goes through), serve (serve, config), store (init,
put, ls, rm, gc, verify, du), tokens (token add|ls|rm), client (push, pull, wait).
"""

import click

from artifactd.cli.client import CLIENT_COMMANDS
from artifactd.cli.exitcodes import Group
from artifactd.cli.serve import SERVE_COMMANDS
from artifactd.cli.store import STORE_COMMANDS
from artifactd.cli.tokens import token


@click.group(
    cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(package_name="artifactd")
def main() -> None:
    """artifactd: a streaming file-download and artifact server."""


for _command in (*SERVE_COMMANDS, token, *STORE_COMMANDS, *CLIENT_COMMANDS):
    main.add_command(_command)

__all__ = ["main"]
