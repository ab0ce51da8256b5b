"""Last-access times batched in memory: a read notes a time, a flush writes the batch.

Backends that persist access times never write per read; they note the time here and
persist the batch taken at flush time (putting it back if the write fails).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any


class PendingAccesses:
    """Access times noted since the last flush, newest per path."""

    def __init__(self) -> None:
        self._times: dict[str, float] = {}

    def note(self, path: str) -> float:
        """Note that `path` is read now; returns the time noted."""
        now = time.time()
        self._times[path] = now
        return now

    def get(self, path: str) -> float | None:
        return self._times.get(path)

    def forget(self, path: str) -> None:
        """The artifact is gone: its access time has nothing left to describe."""
        self._times.pop(path, None)

    def take(self) -> dict[str, float]:
        """The batch to persist; the next notes start a new one."""
        batch, self._times = self._times, {}
        return batch

    def put_back(self, batch: Mapping[str, float]) -> None:
        """Keep a batch that could not be written for the next flush."""
        merge_times(self._times, batch)


def merge_times(into: dict[str, float], more: Mapping[Any, Any]) -> None:
    """Fold access times into `into`, keeping the later one per path; entries that are not
    (path, number) pairs (from a state object another version wrote) are skipped."""
    for path, at in more.items():
        if isinstance(path, str) and isinstance(at, int | float):
            into[path] = max(float(at), into.get(path, 0.0))
