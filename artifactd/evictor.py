"""Retention: which artifacts to evict (a pure function) and the background task doing it.

Each pass deletes expired artifacts, removes temp files of crashed uploads, and with a size
limit evicts the least recently accessed artifacts until the store fits. With several
processes on one root, the store's maintenance lock lets exactly one of them run a pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from artifactd.errors import StorageFullError, StoreUnavailableError
from artifactd.store.base import ArtifactInfo, Store

log = logging.getLogger("artifactd.evictor")

EvictionReason = Literal["ttl", "size"]


@dataclass(frozen=True, slots=True)
class Victim:
    """An artifact chosen for eviction, and why."""

    artifact: ArtifactInfo
    reason: EvictionReason


def select_victims(
    artifacts: Sequence[ArtifactInfo], now: float, max_size_bytes: int | None
) -> list[Victim]:
    """What one pass evicts, in order: every artifact expired at `now` (reason "ttl"),
    then, with a size budget, the least recently accessed of the rest (reason "size")
    until the survivors add up to at most `max_size_bytes`.

    Never accessed counts as accessed when created; ties go by path, so the choice is
    deterministic. Paths are unique (one version per path), which `survivors` relies on.
    """
    victims = [Victim(a, "ttl") for a in artifacts if a.is_expired(now)]
    if max_size_bytes is None:
        return victims
    expired = {v.artifact.path for v in victims}
    live = [a for a in artifacts if a.path not in expired]
    total = sum(a.size for a in live)
    if total <= max_size_bytes:
        return victims
    for artifact in sorted(live, key=lambda a: (a.last_accessed or a.created_at, a.path)):
        if total <= max_size_bytes:
            break
        victims.append(Victim(artifact, "size"))
        total -= artifact.size
    return victims


def survivors(artifacts: Sequence[ArtifactInfo], victims: Sequence[Victim]) -> list[ArtifactInfo]:
    """The artifacts not among `victims` (by path: one set lookup each)."""
    gone = {v.artifact.path for v in victims}
    return [a for a in artifacts if a.path not in gone]


@dataclass
class EvictionReport:
    expired: list[str] = field(default_factory=list)
    over_size: list[str] = field(default_factory=list)
    stale_uploads: int = 0
    bytes_freed: int = 0
    live_artifacts: int = 0  # what remains after the pass
    live_bytes: int = 0
    skipped: bool = False  # another process held the maintenance lock


OnEvicted = Callable[[ArtifactInfo, EvictionReason], None]
OnPass = Callable[[EvictionReport], None]


class Evictor:
    """Runs eviction passes; `on_evicted` is told about every artifact removed."""

    def __init__(
        self,
        store: Store,
        *,
        max_size_bytes: int | None = None,
        on_evicted: OnEvicted | None = None,
        on_pass: OnPass | None = None,
    ) -> None:
        self.store = store
        self.max_size_bytes = max_size_bytes
        self.on_evicted = on_evicted
        self.on_pass = on_pass
        self.evicted_total = 0

    async def run_once(self, *, dry_run: bool = False) -> EvictionReport:
        report = EvictionReport()
        # Every process writes its batched access times, lock or not, so the process that
        # does evict judges "least recently used" by everybody's downloads.
        await self.store.flush_access_times()
        async with self.store.maintenance_lock() as acquired:
            if not acquired:
                report.skipped = True
                return report
            artifacts = [a async for a in self.store.iter_artifacts(include_expired=True)]
            victims = select_victims(artifacts, time.time(), self.max_size_bytes)
            await self._evict(victims, report, dry_run)
            live = survivors(artifacts, victims)
            report.live_artifacts = len(live)
            report.live_bytes = sum(a.size for a in live)
            if not dry_run:
                report.stale_uploads = await self.store.collect_garbage()
        if self.on_pass is not None and not dry_run:
            self.on_pass(report)
        return report

    async def _evict(self, victims: list[Victim], report: EvictionReport, dry_run: bool) -> None:
        for victim in victims:
            artifact = victim.artifact
            # evict() removes exactly this version: a new upload meanwhile is left alone.
            if dry_run or await self._evict_one(artifact):
                paths = report.expired if victim.reason == "ttl" else report.over_size
                paths.append(artifact.path)
                report.bytes_freed += artifact.size
                if not dry_run:
                    self.evicted_total += 1
                    if self.on_evicted is not None:
                        self.on_evicted(artifact, victim.reason)

    async def _evict_one(self, artifact: ArtifactInfo) -> bool:
        """Evict one artifact; one that cannot be removed now (a full or read-only disk,
        storage unreachable) is left for the next pass, and the pass goes on freeing space."""
        try:
            return await self.store.evict(artifact)
        except (StorageFullError, StoreUnavailableError, OSError) as exc:
            log.warning("cannot evict %s now (%s); trying again next pass", artifact.path, exc)
            return False

    async def run_forever(self, interval_seconds: float) -> None:
        """A pass now (so gauges are right from the start), then one every interval."""
        while True:
            try:
                report = await self.run_once()
            except Exception:
                log.exception("eviction pass failed; retrying in %ss", interval_seconds)
            else:
                _log_report(report)
            await asyncio.sleep(interval_seconds)


def _log_report(report: EvictionReport) -> None:
    if report.expired or report.over_size or report.stale_uploads:
        log.info(
            "evicted %d expired and %d over-size artifacts (%d bytes), removed %d stale uploads",
            len(report.expired),
            len(report.over_size),
            report.bytes_freed,
            report.stale_uploads,
        )


@contextlib.asynccontextmanager
async def running(evictor: Evictor, interval_seconds: float) -> AsyncIterator[None]:
    """Run the evictor in the background for the duration of the block."""
    task = asyncio.create_task(evictor.run_forever(interval_seconds), name="artifactd-evictor")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
