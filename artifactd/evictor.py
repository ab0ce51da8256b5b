"""Retention: which artifacts to evict (`select_victims`, the pure statement of the rule)
and the background task doing it.

Each pass deletes expired artifacts, removes temp files of crashed uploads, and with a size
limit evicts the least recently accessed artifacts until the store fits (and each prefix
whose policy has a max_size fits that). A pass streams its victims from the store's
eviction order (on the filesystem, the metadata index) rather than gathering every
artifact: its cost follows what it removes, not what the store holds. With several
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
    # Counted always; the paths above only when the Evictor keeps them (`report_paths`).
    expired_count: int = 0
    over_size_count: int = 0
    over_size_bytes: int = 0
    bytes_freed: int = 0
    live_artifacts: int = 0  # what remains after the pass
    live_bytes: int = 0
    skipped: bool = False  # another process held the maintenance lock


# Victims per store call (one lock and one metadata transaction each on the filesystem).
EVICT_BATCH = 500


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
        report_paths: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.max_size_bytes = max_size_bytes
        self.policies = tuple(policies)
        self.on_evicted = on_evicted
        self.on_pass = on_pass
        # A server tells of each eviction as it happens (`on_evicted`): holding every path
        # of a pass that evicts millions would cost memory for nothing.
        self.report_paths = report_paths
        self.clock = clock
        self.evicted_total = 0

    async def run_once(self, *, dry_run: bool = False) -> EvictionReport:
        """One pass, streamed from the store's eviction order (`iter_expired`,
        `iter_least_recent`, `usage`): it reads the victims and one page past them, keeps
        one batch in memory, and lets the loop run between batches. The same choice as
        `select_victims` over the whole store."""
        report = EvictionReport()
        # Every process writes its batched access times, lock or not, so the process that
        # does evict judges "least recently used" by everybody's downloads.
        await self.store.flush_access_times()
        async with self.store.maintenance_lock() as acquired:
            if not acquired:
                report.skipped = True
                return report
            await self.store.reconcile()  # files placed or removed by hand since the last
            now = self.clock()
            # In a dry run nothing goes, so what was chosen is remembered to be skipped.
            chosen: set[str] | None = set() if dry_run else None
            await self._evict(self.store.iter_expired(now), None, "ttl", None, report, chosen)
            for policy in sorted(self.policies, key=lambda p: p.prefix):
                if policy.max_size is not None:
                    await self._fit_prefix(policy, now, report, chosen)
            if self.max_size_bytes is not None:
                over = (await self.store.usage(now=now)).bytes - (
                    report.over_size_bytes if dry_run else 0
                )
                candidates = self.store.iter_least_recent("", now)
                await self._evict(
                    candidates, over - self.max_size_bytes, "size", None, report, chosen
                )
            usage = await self.store.usage(now=now)
            report.live_artifacts, report.live_bytes = usage.artifacts, usage.bytes
            if dry_run:
                report.live_artifacts -= report.over_size_count
                report.live_bytes -= report.over_size_bytes
            else:
                report.stale_uploads = await self.store.collect_garbage()
                # Expired upload resources (tus) go by the same pass, on every backend.
                report.stale_uploads += await resources_for(self.store).remove_expired()
        if self.on_pass is not None and not dry_run:
            self.on_pass(report)
        return report

    async def _fit_prefix(
        self, policy: Policy, now: float, report: EvictionReport, chosen: set[str] | None
    ) -> None:
        """Evict the least recently used of what `policy` governs (its prefix, less the
        longer prefixes of other policies under it) until that fits its max_size."""
        assert policy.max_size is not None
        inner = [
            p.prefix
            for p in self.policies
            if p.prefix != policy.prefix and p.prefix.startswith(policy.prefix)
        ]
        # Only the outermost of the inner prefixes: the others lie within them.
        outermost = [p for p in inner if not any(p != q and p.startswith(q) for q in inner)]
        governed = (await self.store.usage(policy.prefix, now)).bytes
        for prefix in outermost:
            governed -= (await self.store.usage(prefix, now)).bytes
        candidates = (
            info
            async for info in self.store.iter_least_recent(policy.prefix, now)
            if policy_for(self.policies, info.path) is policy
        )
        await self._evict(
            candidates, governed - policy.max_size, "size", policy.prefix, report, chosen
        )

    async def _evict(
        self,
        candidates: AsyncIterator[ArtifactInfo],
        excess: int | None,
        reason: EvictionReason,
        prefix: str | None,
        report: EvictionReport,
        chosen: set[str] | None,
    ) -> None:
        """Evict `candidates` in order, in batches (one store call each), until `excess`
        bytes are gone (None: every candidate). The bookkeeping of a batch is O(batch) on
        the loop, which runs other tasks between batches and between the store's pages."""
        if excess is not None and excess <= 0:
            return
        batch: list[Victim] = []
        pending = 0  # bytes of the batch not yet evicted
        async for info in candidates:
            if chosen is not None and info.path in chosen:
                continue
            batch.append(Victim(info, reason, prefix))
            pending += info.size
            if len(batch) == EVICT_BATCH or (excess is not None and pending >= excess):
                freed = await self._evict_batch(batch, report, chosen)
                if excess is not None:
                    excess -= freed
                    if excess <= 0:
                        return
                batch, pending = [], 0
        if batch:
            await self._evict_batch(batch, report, chosen)

    async def _evict_batch(
        self, batch: list[Victim], report: EvictionReport, chosen: set[str] | None
    ) -> int:
        """Evict one batch; returns the bytes freed."""
        if chosen is not None:
            removed = [True] * len(batch)
            chosen.update(v.artifact.path for v in batch)
        else:
            # evict_batch removes exactly these versions: a new upload meanwhile stays.
            removed = await self.store.evict_batch([v.artifact for v in batch])
        freed = 0
        for victim, gone in zip(batch, removed, strict=True):
            if gone:
                self._record(victim, report, chosen is not None)
                freed += victim.artifact.size
        await asyncio.sleep(0)
        return freed

    def _record(self, victim: Victim, report: EvictionReport, dry_run: bool) -> None:
        artifact = victim.artifact
        if victim.reason == "ttl":
            report.expired_count += 1
        else:
            report.over_size_count += 1
            report.over_size_bytes += artifact.size
        if self.report_paths:
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
    if report.expired_count or report.over_size_count or report.stale_uploads:
        log.info(
            "evicted %d expired and %d over-size artifacts (%d bytes), removed %d stale uploads",
            report.expired_count,
            report.over_size_count,
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
