"""Shared fixtures: a guard against blocking the event loop, stores, apps, real servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from tests.serverproc import ServerProcess

TESTS = Path(__file__).resolve().parent
# Each folder of tests/ is a marker (pyproject.toml declares them), so `-m` selects groups
# without every test file repeating its own folder's name.
FOLDER_MARKERS = {"unit": "unit", "store": "store", "web": "web", "process": "process"}
# Fixtures that start SeaweedFS: any test using one needs the S3 server.
S3_FIXTURES = {"seaweed", "s3_bucket", "s3_versioned_bucket"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by where they live and what they start: folder, S3, browser."""
    for item in items:
        parts = item.path.resolve().relative_to(TESTS).parts
        if len(parts) > 1 and parts[0] in FOLDER_MARKERS:
            item.add_marker(FOLDER_MARKERS[parts[0]])
        if parts[-1] == "test_browser.py":
            item.add_marker("browser")
        if needs_s3(item):
            item.add_marker("s3")


def needs_s3(item: pytest.Item) -> bool:
    """Uses a SeaweedFS fixture, directly or as the `s3` case of a parametrized backend
    (the contract suite asks for its fixtures only in that case)."""
    if S3_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "s3" in callspec.params.values()


@pytest.fixture(autouse=True)
def blockbuster(request: pytest.FixtureRequest) -> Iterator[BlockBuster | None]:
    """Fail any test whose code makes a blocking call on a running event loop."""
    if request.node.get_closest_marker("allow_blocking"):
        yield None
        return
    with blockbuster_ctx(scanned_modules=["artifactd"]) as bb:
        # By design (store/filesystem/loopopen.py): one indexed read on the loop's own
        # connection, which never waits for a lock.
        for name in ("sqlite3.Connection.execute", "sqlite3.Cursor.fetchall"):
            bb.functions[name].can_block_in(
                "artifactd/store/filesystem/loopopen.py", {"find", "_connection"}
            )
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
