"""A streamed eviction pass chooses what `select_victims` chooses over the whole store, on
the reference backend and on the filesystem's index."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifactd.evictor import Evictor, select_victims
from artifactd.policies import Policy
from artifactd.store.base import ArtifactInfo
from artifactd.store.filesystem import FilesystemStore
from artifactd.store.filesystem.metadb import VersionRow
from artifactd.store.memory import MemoryStore
from tests.unit.test_evictor import NOW, policy_sets, stores


def expected(
    artifacts: list[ArtifactInfo], max_size: int | None, policies: list[Policy]
) -> tuple[list[str], list[str]]:
    victims = select_victims(artifacts, NOW, max_size, policies)
    return (
        [v.artifact.path for v in victims if v.reason == "ttl"],
        [v.artifact.path for v in victims if v.reason == "size"],
    )


async def pass_on(
    store: MemoryStore | FilesystemStore,
    max_size: int | None,
    policies: list[Policy],
    dry_run: bool,
) -> tuple[list[str], list[str]]:
    evictor = Evictor(store, max_size_bytes=max_size, policies=policies, clock=lambda: NOW)
    report = await evictor.run_once(dry_run=dry_run)
    return sorted(report.expired), report.over_size


@settings(max_examples=80, deadline=None)
@given(stores(), st.none() | st.integers(0, 600), policy_sets(), st.booleans())
def test_the_memory_backend_evicts_what_select_victims_chooses(
    artifacts: list[ArtifactInfo], max_size: int | None, policies: list[Policy], dry_run: bool
) -> None:
    store = MemoryStore()
    for info in artifacts:
        store._objects[info.path] = (b"x" * info.size, info)
    ttl, size = expected(artifacts, max_size, policies)
    assert asyncio.run(pass_on(store, max_size, policies, dry_run)) == (sorted(ttl), size)


@pytest.mark.allow_blocking
@settings(max_examples=25, deadline=None)
@given(stores(), st.none() | st.integers(0, 600), policy_sets(), st.booleans())
def test_the_filesystem_index_evicts_what_select_victims_chooses(
    artifacts: list[ArtifactInfo], max_size: int | None, policies: list[Policy], dry_run: bool
) -> None:
    # One path cannot be both a file and a directory on disk: keep the files that fit.
    files = [a for a in artifacts if not any(o.path.startswith(a.path + "/") for o in artifacts)]
    files = [a for a in files if "" not in a.path.split("/")]

    async def run() -> tuple[list[str], list[str]]:
        with tempfile.TemporaryDirectory() as directory:
            store = await FilesystemStore.create(Path(directory))
            try:
                rows = []
                for info in files:
                    target = store.root / info.path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(b"x" * info.size)
                    st_ = os.stat(target)
                    rows.append(
                        VersionRow(
                            info.path,
                            st_.st_ino,
                            info.size,
                            st_.st_mtime_ns,
                            "0" * 64,
                            None,
                            info.created_at,
                            info.expires_at,
                            info.last_accessed,
                            origin="upload",
                        )
                    )
                for row in rows:
                    store.db.upsert(row)
                return await pass_on(store, max_size, policies, dry_run)
            finally:
                await store.close()

    ttl, size = expected(files, max_size, policies)
    assert asyncio.run(run()) == (sorted(ttl), size)
