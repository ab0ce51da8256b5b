"""Shared fixtures: a guard against blocking the event loop, stores, apps, real servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from tests.serverproc import ServerProcess


@pytest.fixture(autouse=True)
def blockbuster(request: pytest.FixtureRequest) -> Iterator[BlockBuster | None]:
    """Fail any test whose code makes a blocking call on a running event loop."""
    if request.node.get_closest_marker("allow_blocking"):
        yield None
        return
    with blockbuster_ctx(scanned_modules=["artifactd"]) as bb:
        yield bb


@pytest.fixture
def storage_root(tmp_path: Path) -> Path:
    root = tmp_path / "storage"
    root.mkdir()
    return root


@pytest.fixture
def server(storage_root: Path) -> Iterator[ServerProcess]:
    """A real `artifactd serve` on a free port, over an empty storage root."""
    proc = ServerProcess(storage_root)
    try:
        yield proc
    finally:
        proc.kill()
