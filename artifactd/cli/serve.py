"""`artifactd serve` and `artifactd config` (which prints what serve would run with)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from artifactd.cli.exitcodes import Command
from artifactd.cli.options import command_settings, serve_options, store_options
from artifactd.config import format_toml, settings_document


@click.command(cls=Command, doing="serve")
@store_options
@serve_options
def serve(root: Path, **flags: Any) -> None:
    """Serve the storage root over HTTP until SIGTERM or SIGINT."""
    settings = command_settings(root, **flags)
    if settings.workers > 1:
        from artifactd.supervisor import run as run_supervised

        run_supervised(settings)
    else:
        from artifactd.server import serve as run_server

        run_server(settings)


@click.command(cls=Command, name="config")
@store_options
@serve_options
def config_command(root: Path, **flags: Any) -> None:
    """Print the effective server configuration (file, environment and flags applied)."""
    settings = command_settings(root, **flags)
    click.echo(format_toml(settings_document(settings)), nl=False)


SERVE_COMMANDS = (serve, config_command)
