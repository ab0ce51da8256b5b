"""The cleaner of abandoned temp files (store/tempfiles.py) against a writer that publishes."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from artifactd.store import tempfiles


def test_a_file_published_while_the_cleaner_takes_its_lock_is_not_abandoned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer renames its file into place, then lets go of the lock: a cleaner that
    opened the name before the rename and locks after the release holds the published
    file, whose inode must not be reported (its rows would go) nor anything unlinked."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    writer = tempfiles.create_locked(tmp / "upload-1.part")
    published = tmp_path / "artifact"
    flock = fcntl.flock

    def commit_then_lock(fd: int, operation: int) -> None:
        if operation & fcntl.LOCK_NB and not published.exists():
            os.rename(tmp / "upload-1.part", published)  # the commit, then its release
            os.close(writer)
        flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", commit_then_lock)
    told: list[list[int]] = []
    assert tempfiles.remove_abandoned(tmp, "upload-", told.append) == 0
    assert told == [] and published.exists()
