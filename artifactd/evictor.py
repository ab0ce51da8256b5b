"""Retention: which artifacts to evict (a pure function) and the background task doing it.

Each pass deletes expired artifacts, removes temp files of crashed uploads, and with a size
limit evicts the least recently accessed artifacts until the store fits (and each prefix
whose policy has a max_size fits that). With several
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

from artifactd.policies import Policy, policy_for
from artifactd.resumable.factory import resources_for
from artifactd.store.base import ArtifactInfo, Store

log = logging.getLogger("artifactd.evictor")

EvictionReason = Literal["ttl", "size"]


@dataclass(frozen=True, slots=True)
class Victim:
    """An artifact chosen for eviction, and why."""

    artifact: ArtifactInfo
    reason: EvictionReason
    prefix: str | None = None  # whose policy's max_size chose it (None: --max-size, TTL)


def select_victims(
    artifacts: Sequence[ArtifactInfo],
    now: float,
    max_size_bytes: int | None,
    policies: Sequence[Policy] = (),
) -> list[Victim]:
    """What one pass evicts, in order: every artifact expired at `now` (reason "ttl"),
    then for each policy with a max_size, the least recently accessed of the live artifacts
    it governs (its prefix is their longest matching one) until they fit it, then with a
    size budget the least recently accessed of all that is left until the survivors add up
    to at most `max_size_bytes` (reason "size" for both).

    Never accessed counts as accessed when created; ties go by path, so the choice is
    deterministic. Paths are unique (one version per path), which `survivors` relies on.
    """
    victims = [Victim(a, "ttl") for a in artifacts if a.is_expired(now)]
    live = [a for a in artifacts if not a.is_expired(now)]
    governed: dict[str, list[ArtifactInfo]] = {}
    budgets: dict[str, int] = {}
    for artifact in live:
        policy = policy_for(policies, artifact.path)
        if policy is not None and policy.max_size is not None:
            governed.setdefault(policy.prefix, []).append(artifact)
            budgets[policy.prefix] = policy.max_size
    for prefix in sorted(governed):
        victims += _least_recent_beyond(governed[prefix], budgets[prefix], prefix)
    if max_size_bytes is not None:
        gone = {v.artifact.path for v in victims}
        victims += _least_recent_beyond([a for a in live if a.path not in gone], max_size_bytes)
    return victims


def _least_recent_beyond(
    artifacts: Sequence[ArtifactInfo], budget: int, prefix: str | None = None
) -> list[Victim]:
    """The least recently accessed of `artifacts` until the rest add up to `budget`."""
    total = sum(a.size for a in artifacts)
    victims: list[Victim] = []
    for artifact in sorted(artifacts, key=lambda a: (a.last_accessed or a.created_at, a.path)):
        if total <= budget:
            break
        victims.append(Victim(artifact, "size", prefix))
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
    # Those of over_size evicted for a policy's max_size: path -> the policy's prefix.
    over_prefix_size: dict[str, str] = field(default_factory=dict)
    stale_uploads: int = 0
    bytes_freed: int = 0
    live_artifacts: int = 0  # what remains after the pass
    live_bytes: int = 0
    skipped: bool = False  # another process held the maintenance lock


# Victims per store call; also how many artifacts are gathered between two turns of the loop.
EVICT_BATCH = 500
GATHER_SLICE = 1000


async def _gather(store: Store) -> list[ArtifactInfo]:
    """Every artifact, expired ones included, letting the loop run every GATHER_SLICE."""
    artifacts: list[ArtifactInfo] = []
    async for artifact in store.iter_artifacts(include_expired=True):
        artifacts.append(artifact)
        if len(artifacts) % GATHER_SLICE == 0:
            await asyncio.sleep(0)
    return artifacts


def _plan(
    artifacts: Sequence[ArtifactInfo],
    now: float,
    max_size_bytes: int | None,
    policies: Sequence[Policy],
) -> tuple[list[Victim], int, int]:
    """The victims, and how many artifacts and bytes remain after them (run in a thread)."""
    victims = select_victims(artifacts, now, max_size_bytes, policies)
    gone_bytes = sum(v.artifact.size for v in victims)
    return victims, len(artifacts) - len(victims), sum(a.size for a in artifacts) - gone_bytes


OnEvicted = Callable[[ArtifactInfo, EvictionReason], None]
OnPass = Callable[[EvictionReport], None]


class Evictor:
    """Runs eviction passes; `on_evicted` is told about every artifact removed."""

    def __init__(
        self,
        store: Store,
        *,
        max_size_bytes: int | None = None,
        policies: Sequence[Policy] = (),
        on_evicted: OnEvicted | None = None,
        on_pass: OnPass | None = None,
    ) -> None:
        self.store = store
        self.max_size_bytes = max_size_bytes
        self.policies = tuple(policies)
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
            artifacts = await _gather(self.store)
            # Selection and totals are O(N log N) over every artifact: off the event loop.
            plan = await asyncio.to_thread(
                _plan, artifacts, time.time(), self.max_size_bytes, self.policies
            )
            del artifacts  # only the victims are needed from here on
            victims, report.live_artifacts, report.live_bytes = plan
            await self._evict(victims, report, dry_run)
            if not dry_run:
                report.stale_uploads = await self.store.collect_garbage()
                # Expired upload resources (tus) go by the same pass, on every backend.
                report.stale_uploads += await resources_for(self.store).remove_expired()
        if self.on_pass is not None and not dry_run:
            self.on_pass(report)
        return report

    async def _evict(self, victims: list[Victim], report: EvictionReport, dry_run: bool) -> None:
        """Evict in batches (one store call each); the bookkeeping of a batch is O(batch)
        on the loop, which runs other tasks between batches."""
        for start in range(0, len(victims), EVICT_BATCH):
            batch = victims[start : start + EVICT_BATCH]
            if dry_run:
                removed = [True] * len(batch)
            else:
                # evict_batch removes exactly these versions: a new upload meanwhile stays.
                removed = await self.store.evict_batch([v.artifact for v in batch])
            for victim, gone in zip(batch, removed, strict=True):
                if gone:
                    self._record(victim, report, dry_run)
            await asyncio.sleep(0)

    def _record(self, victim: Victim, report: EvictionReport, dry_run: bool) -> None:
        artifact = victim.artifact
        paths = report.expired if victim.reason == "ttl" else report.over_size
        paths.append(artifact.path)
        if victim.prefix is not None:
            report.over_prefix_size[artifact.path] = victim.prefix
        report.bytes_freed += artifact.size
        if not dry_run:
            self.evicted_total += 1
            if self.on_evicted is not None:
                self.on_evicted(artifact, victim.reason)

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
