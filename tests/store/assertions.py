"""Checks shared by the store tests."""

from __future__ import annotations

import pytest

from artifactd.errors import NotFoundError
from artifactd.store.base import Store


async def assert_nothing_at(store: Store, path: str) -> None:
    """Neither a file nor a directory is at `path` (an expired file counts as nothing)."""
    with pytest.raises(NotFoundError):
        await store.info(path)
    assert [a async for a in store.iter_artifacts(f"{path}/", include_expired=True)] == []
