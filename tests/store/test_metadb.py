"""The metadata database under several processes at once, as `serve --workers N` runs it."""

from __future__ import annotations

import multiprocessing
import sqlite3
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from artifactd.store.filesystem.metadb import MetadataDB

PROCESSES = 6
TRIALS = 15  # before the fix about one trial in five failed


def _open_together(db_path: Path, start: Barrier, results: multiprocessing.Queue[str]) -> None:
    start.wait()
    try:
        MetadataDB(db_path).close()
        results.put("ok")
    except Exception as exc:  # reported to the test, which shows it
        results.put(repr(exc))


@pytest.mark.allow_blocking
def test_processes_opening_a_new_root_together_all_succeed(tmp_path: Path) -> None:
    # Switching a new database to WAL takes an exclusive lock; SQLite refused the others
    # at once ("database is locked") and a worker of `serve --workers` died at startup.
    context = multiprocessing.get_context("fork")
    for trial in range(TRIALS):
        db_path = tmp_path / f"trial{trial}" / "metadata.db"
        db_path.parent.mkdir()
        start = context.Barrier(PROCESSES)
        results: multiprocessing.Queue[str] = context.Queue()
        processes = [
            context.Process(target=_open_together, args=(db_path, start, results))
            for _ in range(PROCESSES)
        ]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(timeout=60)
        assert outcomes == ["ok"] * PROCESSES, (trial, outcomes)
        with sqlite3.connect(db_path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
