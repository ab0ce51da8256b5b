"""The timed workloads, one method per phase, each measuring one server on the same files.

`Bench.timed` wraps a timed block: the server's CPU time, how busy both cores were, and how
much CPU other processes took meanwhile (bench/noise.py).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import clients, noise
from bench.clients import BenchError
from bench.config import Config, GiB, KiB
from bench.files import TestFiles, warm
from bench.keyloads import KeyWorkloads
from bench.machine import core_busy_seconds, timer_interrupts
from bench.results import Results
from bench.servers import Server


def prime(server: Server, files: TestFiles, timeout: float = 180.0) -> None:
    """First requests before timing: artifactd hashes hand-placed files on first sight (large
    ones in the background), which must not land in a timed phase."""
    for role, name in files.names.items():
        url = server.files_url(name)

        def ready(url: str = url, role: str = role) -> bool:
            status, headers, _ = clients.http_request(url, "HEAD")
            if status != 200 or int(headers.get("content-length", -1)) != files.sizes[role]:
                raise BenchError(f"HEAD {url}: {status} {headers}")
            return server.kind != "artifactd" or "x-checksum-sha256" in headers

        if not clients.wait_until(ready, timeout, interval=0.5):
            raise BenchError(f"{server.name} did not finish hashing {name} in {timeout:.0f}s")


@dataclass
class Timing:
    """What happened on the machine while one timed block ran."""

    seconds: float = 0.0
    server_cpu: float = 0.0  # CPU seconds of the server process(es)
    server_cpu_ticks: float = 0.0  # the same from /proc/<pid>/stat, tick-sampled
    server_core_busy: float | None = None  # fraction of the server's core busy (anything)
    client_core_busy: float | None = None
    foreign_cores: float = 0.0  # cores used by processes outside the bench meanwhile
    softirq_cpu: float = 0.0  # CPU seconds of the ksoftirqd threads meanwhile
    foreign_top: list[tuple[str, float]] = field(default_factory=list)
    server_core_timer_irqs: int | None = None  # local timer interrupts on the server's core

    def as_dict(self) -> dict[str, Any]:
        return {
            "server_cpu_s": self.server_cpu,
            "server_cpu_ticks_s": self.server_cpu_ticks,
            "server_core_busy": self.server_core_busy,
            "client_core_busy": self.client_core_busy,
            "foreign_cores": round(self.foreign_cores, 3),
            "ksoftirqd_cpu_s": self.softirq_cpu,
            "foreign_top": [(name, round(cpu, 2)) for name, cpu in self.foreign_top],
            "server_core_timer_irqs": self.server_core_timer_irqs,
        }


class Bench(KeyWorkloads):
    def __init__(self, cfg: Config, files: TestFiles, results: Results) -> None:
        self.cfg = cfg
        self.files = files
        self.results = results
        self.quiet_budget = cfg.quiet_budget

    def wait_for_quiet(self) -> None:
        """Before a phase: wait (bounded) until other processes leave the cores alone."""
        if self.cfg.quiet_threshold <= 0:
            return
        max_wait = min(self.cfg.quiet_max_wait, self.quiet_budget)
        waited, usage = noise.wait_for_quiet(self.cfg.quiet_threshold, max_wait)
        self.quiet_budget = max(0.0, self.quiet_budget - waited)
        self.results.quiet_waited += waited
        if usage.foreign_cores >= self.cfg.quiet_threshold:
            top = ", ".join(f"{name} {cpu:.1f}s" for name, cpu in usage.top)
            print(f" [busy machine: {usage.foreign_cores:.2f} cores used by {top}]", end="")

    @contextmanager
    def timed(self, server: Server) -> Iterator[Timing]:
        """Measures the block: the server's CPU time, how busy both cores were, and how much
        CPU other processes took meanwhile (filled in when the block ends)."""
        timing = Timing()
        cores = [c for c in (self.cfg.server_cpu, self.cfg.client_cpu) if c is not None]
        snap = noise.snapshot()
        cpu_before = server.cpu_seconds()
        ticks_before = server.cpu_ticks_seconds()
        busy_before = core_busy_seconds(cores)
        server_cpu = self.cfg.server_cpu
        timers_before = None if server_cpu is None else timer_interrupts(server_cpu)
        started = time.monotonic()
        yield timing
        time.sleep(0.05)  # let the server finish the response's tail (logging, accounting)
        timing.server_cpu = server.cpu_seconds() - cpu_before
        timing.server_cpu_ticks = server.cpu_ticks_seconds() - ticks_before
        timing.seconds = time.monotonic() - started
        busy_after = core_busy_seconds(cores)
        if server_cpu is not None and timers_before is not None:
            timers_after = timer_interrupts(server_cpu)
            if timers_after is not None:
                timing.server_core_timer_irqs = timers_after - timers_before
        busy = [(busy_after[c] - busy_before[c]) / timing.seconds for c in cores]
        if len(busy) == 2:
            timing.server_core_busy, timing.client_core_busy = busy
        usage = noise.usage_between(snap, noise.snapshot())
        timing.foreign_cores = usage.foreign_cores
        timing.softirq_cpu = usage.softirq_cpu
        timing.foreign_top = usage.top

    def add(self, metric: str, server: Server, value: float, timing: Timing) -> None:
        self.results.add(metric, server.name, value, timing.foreign_cores)

    def large(self, server: Server) -> None:
        path, size = self.files.path("large"), self.files.sizes["large"]
        warm(path)
        runs: list[clients.CurlResult] = []
        with self.timed(server) as timing:
            for _ in range(self.cfg.scale.large_reps):
                runs.append(clients.curl_download(server.files_url(path.name), expected_size=size))
        total = sum(r.bytes for r in runs)
        seconds = sum(r.seconds for r in runs)
        self.add("large_gbps", server, total / seconds / 1e9, timing)
        self.add("large_cpu_s_per_gib", server, timing.server_cpu / (total / GiB), timing)
        self.results.detail(
            "large",
            server.name,
            {"runs": [r.__dict__ for r in runs], "bytes": total, **timing.as_dict()},
        )

    def _wrk(
        self,
        server: Server,
        role: str,
        connections: int,
        metric: str,
        ranges: int | None = None,
    ) -> None:
        path = self.files.path(role)
        url = server.files_url(path.name)
        size = self.files.sizes[role]
        range_arg = (size, ranges) if ranges else None
        body, status = (ranges, 206) if ranges else (size, 200)
        scale = self.cfg.scale
        warm(path)
        # Untimed warm-up that also counts every status (the Lua response hook costs time).
        check = clients.run_wrk(
            url, connections=connections, duration=scale.wrk_warmup, ranges=range_arg, check=True
        )
        clients.validate_wrk(
            check, body_size=body, status=status, checked=True, connections=connections
        )
        with self.timed(server) as timing:
            result = clients.run_wrk(
                url, connections=connections, duration=scale.wrk_duration, ranges=range_arg
            )
        clients.validate_wrk(
            result, body_size=body, status=status, checked=False, connections=connections
        )
        value = result.rps if metric.endswith("_rps") else result.gbps
        self.add(metric, server, value, timing)
        self.results.detail(
            metric.rsplit("_", 1)[0],
            server.name,
            {
                **result.as_dict(),
                **timing.as_dict(),
                "server_cpu_busy": timing.server_cpu / result.seconds,
                "client_cpu_busy": result.client_cpu_seconds / result.seconds,
                "server_core_timer_irqs_per_request": (
                    None
                    if timing.server_core_timer_irqs is None or not result.requests
                    else timing.server_core_timer_irqs / result.requests
                ),
                "checked_statuses": check.statuses,
            },
        )

    def small(self, server: Server) -> None:
        self._wrk(server, "small", 64, "small_rps")

    def medium(self, server: Server) -> None:
        self._wrk(server, "medium", 16, "medium_gbps")

    def ranges(self, server: Server) -> None:
        self._wrk(server, "large", 16, "ranges_rps", ranges=64 * KiB)

    def _slow(self, server: Server, role: str, metric: str) -> None:
        path = self.files.path(role)
        warm(path)
        reset = server.reset_peak_rss()
        idle = server.rss_kib()
        peak = [idle]

        def sample() -> None:
            peak[0] = max(peak[0], server.rss_kib())

        with self.timed(server) as timing:
            result = clients.slow_downloads(
                server.files_url(path.name),
                size=self.files.sizes[role],
                cfg=self.cfg.slow,
                sample=sample,
            )
        hwm = server.peak_rss_kib() if reset else 0
        peak_kib = max(peak[0], hwm)
        if result.status_ok < 0.95 * result.clients or result.mismatches or result.truncated:
            raise BenchError(f"slow downloads went wrong: {result.as_dict()}")
        self.add(metric, server, peak_kib / KiB, timing)
        if role == "large":
            self.add("slow_idle_rss_mib", server, idle / KiB, timing)
        self.results.detail(
            metric.removesuffix("_peak_rss_mib"),
            server.name,
            {
                **result.as_dict(),
                **timing.as_dict(),
                "idle_rss_mib": idle / KiB,
                "sampled_peak_rss_mib": peak[0] / KiB,
                "vmhwm_mib": hwm / KiB if reset else None,
                "peak_rss_mib": peak_kib / KiB,
            },
        )
        time.sleep(0.5)  # let the server notice the closed connections before the next phase

    def slow(self, server: Server) -> None:
        self._slow(server, "large", "slow_peak_rss_mib")

    def growth(self, server: Server) -> None:
        self._slow(server, "growth", "growth_peak_rss_mib")

    def upload(self, server: Server) -> None:
        path = self.files.path("large")
        url = server.files_url("bench-upload/" + path.name)
        warm(path)
        with self.timed(server) as timing:
            result, body = clients.curl_upload(url, path)
        document = json.loads(body)
        if (
            document.get("sha256") != self.files.large_sha256
            or document.get("size") != (self.files.sizes["large"])
        ):
            raise BenchError(f"upload answered {document}")
        status, _, _ = clients.http_request(url, "DELETE")
        if status != 204:
            raise BenchError(f"DELETE {url}: {status}")
        self.add("upload_gbps", server, result.gbps, timing)
        self.add("upload_cpu_s_per_gib", server, timing.server_cpu / (result.bytes / GiB), timing)
        self.results.detail("upload", server.name, {**result.__dict__, **timing.as_dict()})

    def uploads_small(self, server: Server) -> None:
        """4 KiB and 64 KiB PUTs to new paths, wrk -c16: artifactd makes each durable before
        it answers, nginx's WebDAV PUT does not (no fsync)."""
        for size, metric in ((4 * KiB, "put_4k_rps"), (64 * KiB, "put_64k_rps")):
            self._wrk_puts(server, size, metric)

    def _wrk_puts(self, server: Server, size: int, metric: str) -> None:
        tag = f"{metric.removesuffix('_rps')}-{next(_put_runs)}"
        url = server.files_url(f"put/{tag}/")
        stored = self._upload_root(server) / "put" / tag
        scale = self.cfg.scale
        try:
            check = clients.run_wrk(
                url, connections=16, duration=scale.wrk_warmup, put=(size, "w"), check=True
            )
            clients.validate_puts(check, checked=True)
            os.sync()  # nginx's unflushed warm-up bytes are not written back in the timed run
            with self.timed(server) as timing:
                result = clients.run_wrk(
                    url, connections=16, duration=scale.wrk_duration, put=(size, "t")
                )
            clients.validate_puts(result, checked=False)
            # Not the dot-files: the aiohttp floors' temp files of PUTs still in flight when
            # wrk stopped (bench/floor_put.py writes them in the target directory).
            names = sorted(n for n in os.listdir(stored) if not n.startswith("."))
            if len(names) < check.requests + result.requests:
                raise BenchError(f"{len(names)} files stored after {result.requests} PUTs")
            for name in names[:: max(1, len(names) // 3)]:
                status, _, body = clients.http_request(url + name)
                if status != 200 or body != clients.put_body(size):
                    raise BenchError(f"GET {url}{name} after the PUTs: {status}, {len(body)} B")
        finally:
            shutil.rmtree(stored, ignore_errors=True)
            os.sync()
        self.add(metric, server, result.rps, timing)
        self.results.detail(
            metric.removesuffix("_rps"),
            server.name,
            {
                **result.as_dict(),
                **timing.as_dict(),
                "server_cpu_busy": timing.server_cpu / result.seconds,
                "client_cpu_busy": result.client_cpu_seconds / result.seconds,
                "server_cpu_ms_per_request": 1000 * timing.server_cpu / max(1, result.requests),
                "server_cpu_us_per_request": 1e6 * timing.server_cpu / max(1, result.requests),
                "checked_statuses": check.statuses,
            },
        )

    def _upload_root(self, server: Server) -> Path:
        """The directory a server's /files/ maps to (bench/run.py start_servers)."""
        if server.kind == "artifactd":
            return self.files.data_dir.parent / f"root-{server.name}"
        return self.files.data_dir


# Numbers the upload runs, so that each round PUTs to paths of its own.
_put_runs = itertools.count(1)
