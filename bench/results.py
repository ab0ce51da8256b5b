"""The samples of one run, with how disturbed each was, and their medians and ratios."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Results:
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # Per sample: cores that other processes used while it was measured.
    foreign: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    quiet_waited: float = 0.0
    details: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # This machine's own limits for an upload, in GB/s, by name: write + fsync of the large
    # file and sha256 on one core, measured when the files are created.
    upload_ceilings: dict[str, float] = field(default_factory=dict)
    # New 4 KiB files this disk makes durable per second with 16 writers (bench/fsync_ceiling.py).
    durable_files_per_s: float | None = None

    def add(self, metric: str, server: str, value: float, foreign: float = 0.0) -> None:
        self.samples.setdefault(metric, {}).setdefault(server, []).append(value)
        self.foreign.setdefault(metric, {}).setdefault(server, []).append(foreign)

    def disturbed(self, metric: str, server: str, threshold: float) -> int:
        """How many of the samples ran while other processes used ≥ `threshold` cores."""
        return sum(f >= threshold for f in self.foreign.get(metric, {}).get(server, []))

    def detail(self, phase: str, server: str, data: dict[str, Any]) -> None:
        self.details.setdefault(phase, {}).setdefault(server, []).append(data)

    def detail_median(self, phase: str, server: str, key: str) -> float | None:
        """The median of one number of a phase's details over a server's runs."""
        runs = self.details.get(phase, {}).get(server, [])
        values = [float(run[key]) for run in runs if run.get(key) is not None]
        return statistics.median(values) if values else None

    def median(self, metric: str, server: str) -> float | None:
        values = self.samples.get(metric, {}).get(server)
        return statistics.median(values) if values else None

    def summary(self) -> dict[str, dict[str, dict[str, float | int]]]:
        return {
            metric: {
                server: {
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                    "n": len(values),
                }
                for server, values in by_server.items()
            }
            for metric, by_server in self.samples.items()
        }

    def ratio(self, metric: str, server: str, baseline: str) -> float | None:
        value, base = self.median(metric, server), self.median(metric, baseline)
        if value is None or base is None or base == 0:
            return None
        return value / base
