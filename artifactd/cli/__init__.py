"""The `artifactd` command line: the click group and its commands."""

from artifactd.cli.commands import main

__all__ = ["main"]
