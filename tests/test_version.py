"""The version is written once, in artifactd/__init__.py; everything else reads it."""

from __future__ import annotations

import importlib.metadata

from click.testing import CliRunner

import artifactd
from artifactd.cli import main


def test_installed_metadata_carries_the_package_version() -> None:
    assert importlib.metadata.version("artifactd") == artifactd.__version__


def test_version_flag_prints_the_package_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip().endswith(f"version {artifactd.__version__}")
