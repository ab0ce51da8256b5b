"""The metrics directory of `--workers`: removed once its supervisor is gone, however."""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import pytest

from artifactd.metricsdir import LOCK_NAME, PREFIX, metrics_directory, remove_abandoned


def test_a_live_supervisors_directory_is_kept_and_removed_when_it_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with metrics_directory() as path:
        assert Path(path).parent == tmp_path
        assert (Path(path) / LOCK_NAME).exists()
        assert remove_abandoned(str(tmp_path)) == []  # its lock is held
        assert Path(path).is_dir()
    assert not Path(path).exists()


def test_a_directory_nobody_holds_is_removed(tmp_path: Path) -> None:
    abandoned = tmp_path / f"{PREFIX}dead"
    abandoned.mkdir()
    (abandoned / LOCK_NAME).touch()
    (abandoned / "counter_123.db").write_bytes(b"x")
    held = tmp_path / f"{PREFIX}alive"
    held.mkdir()
    (held / LOCK_NAME).touch()
    fd = os.open(held / LOCK_NAME, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another open file: as another supervisor's lock
    unlocked = tmp_path / f"{PREFIX}being-made"
    unlocked.mkdir()  # no lock file yet: its supervisor may be making it
    other = tmp_path / "someone-else"
    other.mkdir()
    (other / LOCK_NAME).touch()
    try:
        assert remove_abandoned(str(tmp_path)) == [str(abandoned)]
    finally:
        os.close(fd)
    assert not abandoned.exists()
    assert held.is_dir() and unlocked.is_dir() and other.is_dir()
