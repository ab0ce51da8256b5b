"""How much CPU other processes take while the bench measures (the machine may be shared).

A snapshot reads the CPUs' busy time and every process's CPU time from /proc; between two
snapshots, "foreign" time is the CPUs' busy time that the harness's own process tree did not
use (nor the softirq threads, reported apart: deferred network work of the bench's own traffic
runs there). Interrupt time not charged to any process counts as foreign, so a quiet machine
shows a few hundredths of a core.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Snapshot:
    taken: float
    busy: float = 0.0  # non-idle seconds of all CPUs together, from /proc/stat
    own: dict[int, float] = field(default_factory=dict)  # a process's own CPU seconds
    reaped: dict[int, float] = field(default_factory=dict)  # ... of its reaped children
    parent: dict[int, int] = field(default_factory=dict)
    name: dict[int, str] = field(default_factory=dict)


def _busy_seconds() -> float:
    with open("/proc/stat") as stat:
        ticks = [int(f) for f in stat.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK  # minus idle and iowait


def snapshot() -> Snapshot:
    snap = Snapshot(time.monotonic(), _busy_seconds())
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        close = text.rindex(")")
        fields = text[close + 2 :].split()
        snap.name[pid] = text[text.index("(") + 1 : close]
        snap.parent[pid] = int(fields[1])
        snap.own[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        snap.reaped[pid] = (int(fields[13]) + int(fields[14])) / CLK_TCK
    return snap


def own_tree(snap: Snapshot, root: int) -> set[int]:
    """`root` and all its descendants in the snapshot."""
    children: dict[int, list[int]] = {}
    for pid, ppid in snap.parent.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo += children.get(pid, [])
    return tree


@dataclass
class Usage:
    seconds: float  # wall time between the snapshots
    foreign_cpu: float  # CPU seconds used by processes outside the bench
    softirq_cpu: float  # CPU seconds of the ksoftirqd threads
    top: list[tuple[str, float]]  # the biggest foreign users (their own time)

    @property
    def foreign_cores(self) -> float:
        return self.foreign_cpu / self.seconds if self.seconds > 0 else 0.0


def usage_between(before: Snapshot, after: Snapshot, root: int | None = None) -> Usage:
    """Foreign time = every CPU's busy time minus the bench's own tree (its processes and the
    children they reaped, such as curl and wrk) minus the softirq threads. Computed from the
    totals, so a foreign parent reaping a long-lived child does not count in one window."""
    root = os.getpid() if root is None else root
    ours = own_tree(after, root) | own_tree(before, root)
    ours_cpu = softirq = 0.0
    users: dict[str, float] = {}
    for pid, cpu in after.own.items():
        delta_own = cpu - before.own.get(pid, 0.0)
        if pid in ours:
            ours_cpu += delta_own + after.reaped[pid] - before.reaped.get(pid, 0.0)
            continue
        name = after.name.get(pid, "?")
        if delta_own <= 0:
            continue
        if name.startswith("ksoftirqd/"):
            softirq += delta_own
        else:
            users[name] = users.get(name, 0.0) + delta_own
    foreign = max(0.0, after.busy - before.busy - ours_cpu - softirq)
    top = sorted(users.items(), key=lambda kv: -kv[1])[:3]
    return Usage(after.taken - before.taken, foreign, softirq, top)


def wait_for_quiet(threshold: float, max_wait: float, window: float = 0.5) -> tuple[float, Usage]:
    """Wait until other processes use less than `threshold` cores over a `window`, at most
    `max_wait` seconds. Returns the time waited and the last window's usage."""
    started = time.monotonic()
    while True:
        before = snapshot()
        time.sleep(window)
        usage = usage_between(before, snapshot())
        waited = time.monotonic() - started
        if usage.foreign_cores < threshold or waited >= max_wait:
            return waited, usage
