"""`make bench`: artifactd beside nginx and aiohttp's own FileResponse, same files, one run.

    python -m bench.harness [--scale full|small|tiny] [--rounds N] [--servers a,b,...]

Creates the test files in a temp dir, starts every server pinned to CPU 0 (the clients run on
CPU 1), warms the page cache before each timed phase, runs the workloads interleaved over
several rounds (each round runs every workload on every server, the server order rotating from
round to round), then prints medians, spreads and ratios, one line per target of issue 5, and
writes everything as JSON to bench-results/latest.json (and a Markdown copy of the tables).

Workloads: (a) 1 GiB with curl, one stream: GB/s and server CPU s/GiB; (b) 4 KiB file,
wrk -c64: req/s; (c) 1 MiB file, wrk -c16: GB/s; (d) random 64 KiB ranges of the 1 GiB file,
wrk -c16: req/s; (e) 500 concurrent slow downloads of the 1 GiB file: peak server RSS;
(f) artifactd only: `curl -T` of the 1 GiB file (GB/s, server CPU s/GiB), and (e) again with
a 64 MiB file to see whether memory grows with file size.

Environment: BENCH_SCALE, BENCH_ROUNDS, BENCH_SERVERS, BENCH_WORKLOADS stand for the flags.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

from bench import clients, noise
from bench.clients import BenchError, SlowConfig
from bench.servers import (
    CLK_TCK,
    Server,
    find_tool,
    nginx_version,
    start_artifactd,
    start_fileresponse,
    start_floor,
    start_nginx,
)

KiB, MiB, GiB = 1024, 1024**2, 1024**3
REPO = Path(__file__).resolve().parent.parent

# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    large: int  # the "1 GiB" file: single stream, ranges, slow downloads, upload
    medium: int  # the "1 MiB" file
    small: int  # the "4 KiB" file
    growth: int  # a smaller large file: does slow-download memory grow with file size?
    rounds: int
    wrk_duration: float
    wrk_warmup: float
    large_reps: int  # downloads per single-stream sample
    slow_clients: int
    slow_duration: float


SCALES: dict[str, Scale] = {
    "full": Scale(GiB, MiB, 4 * KiB, 64 * MiB, 3, 5.0, 1.0, 2, 500, 8.0),
    "small": Scale(64 * MiB, MiB, 4 * KiB, 16 * MiB, 2, 2.0, 1.0, 2, 200, 3.0),
    "tiny": Scale(4 * MiB, 256 * KiB, 4 * KiB, MiB, 1, 1.0, 1.0, 1, 20, 1.0),
}

# "aiohttp-floor" (bench/baseline_floor.py) is no file server: a ceiling for artifactd's
# per-request cost on aiohttp, it runs the 4 KiB and range workloads only. "aiohttp-lowlevel"
# is the same below aiohttp's Application (a low-level web.Server), as artifactd's hot path.
FLOOR = "aiohttp-floor"
LOW_LEVEL_FLOOR = "aiohttp-lowlevel"
FLOORS = (FLOOR, LOW_LEVEL_FLOOR)
ALL_SERVERS = ("artifactd", "artifactd-asyncio", "aiohttp", "aiohttp-asyncio", "nginx", *FLOORS)
DEFAULT_SERVERS = ("artifactd", "artifactd-asyncio", "aiohttp", "nginx", *FLOORS)
# With --compare-src: artifactd (uvloop, default config) from another checkout.
REFERENCE = "artifactd-ref"
ARTIFACTD_SERVERS = ("artifactd", "artifactd-asyncio", REFERENCE)
BASELINES = {"nginx": "nginx", "aiohttp": "aiohttp FileResponse", REFERENCE: "artifactd-ref"}
PHASES = ("large", "small", "medium", "ranges", "slow", "growth", "upload")
SERVER_TITLES = {
    "artifactd": "artifactd (uvloop)",
    "artifactd-asyncio": "artifactd --loop asyncio",
    "aiohttp": "aiohttp FileResponse (uvloop)",
    "aiohttp-asyncio": "aiohttp FileResponse (asyncio)",
    "nginx": "nginx",
    REFERENCE: "artifactd-ref (--compare-src)",
    FLOOR: "aiohttp floor (bytes in memory)",
    LOW_LEVEL_FLOOR: "aiohttp low-level floor (no Application)",
}


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    unit: str
    higher_is_better: bool
    decimals: int


METRICS = (
    Metric("large_gbps", "{large}, one stream (curl)", "GB/s", True, 2),
    Metric("large_cpu_s_per_gib", "{large}, one stream: server CPU", "s/GiB", False, 3),
    Metric("small_rps", "{small} file, wrk -c64", "req/s", True, 0),
    Metric("medium_gbps", "{medium} file, wrk -c16", "GB/s", True, 2),
    Metric("ranges_rps", "random 64 KiB ranges of {large}, wrk -c16", "req/s", True, 0),
    Metric("slow_peak_rss_mib", "{clients} slow downloads of {large}: peak RSS", "MiB", False, 1),
    Metric("slow_idle_rss_mib", "{clients} slow downloads: RSS just before", "MiB", False, 1),
    Metric(
        "growth_peak_rss_mib", "{clients} slow downloads of {growth}: peak RSS", "MiB", False, 1
    ),
    Metric("upload_gbps", "upload {large}, curl -T", "GB/s", True, 2),
    Metric("upload_cpu_s_per_gib", "upload {large}: server CPU", "s/GiB", False, 3),
)
METRIC_BY_KEY = {m.key: m for m in METRICS}


@dataclass
class Config:
    scale_name: str
    scale: Scale
    servers: list[str]
    phases: list[str]
    out_dir: Path
    workdir: Path | None
    keep: bool
    slow: SlowConfig
    quiet_threshold: float = 0.1
    quiet_max_wait: float = 60.0
    quiet_budget: float = 900.0
    artifactd_src: Path | None = None
    compare_src: Path | None = None
    server_cpu: int | None = None
    client_cpu: int | None = None


def human_size(n: int) -> str:
    for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} B"


def metric_title(metric: Metric, cfg: Config) -> str:
    """The metric's title with this run's sizes and client count."""
    s = cfg.scale
    return metric.title.format(
        large=human_size(s.large),
        growth=human_size(s.growth),
        medium=human_size(s.medium),
        small=human_size(s.small),
        clients=cfg.slow.clients,
    )


# --- results --------------------------------------------------------------------------------


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

    def add(self, metric: str, server: str, value: float, foreign: float = 0.0) -> None:
        self.samples.setdefault(metric, {}).setdefault(server, []).append(value)
        self.foreign.setdefault(metric, {}).setdefault(server, []).append(foreign)

    def disturbed(self, metric: str, server: str, threshold: float) -> int:
        """How many of the samples ran while other processes used ≥ `threshold` cores."""
        return sum(f >= threshold for f in self.foreign.get(metric, {}).get(server, []))

    def detail(self, phase: str, server: str, data: dict[str, Any]) -> None:
        self.details.setdefault(phase, {}).setdefault(server, []).append(data)

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


# --- files and page cache -------------------------------------------------------------------


@dataclass
class TestFiles:
    data_dir: Path
    names: dict[str, str]  # role -> file name under data_dir
    sizes: dict[str, int]
    large_sha256: str
    disk_write_gbps: float
    sha256_gbps: float

    def path(self, role: str) -> Path:
        return self.data_dir / self.names[role]


def create_files(workdir: Path, scale: Scale) -> TestFiles:
    """Random files, written and fsynced so no writeback runs during the timed phases."""
    data_dir = workdir / "data"
    data_dir.mkdir()
    sizes = {"large": scale.large, "growth": scale.growth, "medium": scale.medium}
    sizes["small"] = scale.small
    names = {role: f"{role}-{human_size(n).replace(' ', '')}.bin" for role, n in sizes.items()}
    write_seconds = 0.0
    block = 16 * MiB
    for role, size in sizes.items():
        with open(data_dir / names[role], "wb") as out:
            left = size
            while left > 0:
                chunk = os.urandom(min(block, left))
                started = time.perf_counter()
                out.write(chunk)
                write_seconds += time.perf_counter() - started if role == "large" else 0.0
                left -= len(chunk)
            started = time.perf_counter()
            out.flush()
            os.fsync(out.fileno())
            write_seconds += time.perf_counter() - started if role == "large" else 0.0
    # Readable by nginx's unprivileged worker too.
    os.chmod(workdir, 0o755)
    os.chmod(data_dir, 0o755)
    started = time.perf_counter()
    digest = hashlib.sha256()
    for view in read_chunks(data_dir / names["large"]):
        digest.update(view)
    hash_seconds = time.perf_counter() - started
    return TestFiles(
        data_dir,
        names,
        sizes,
        digest.hexdigest(),
        scale.large / write_seconds / 1e9,
        scale.large / hash_seconds / 1e9,
    )


def core_busy_seconds(cores: list[int]) -> dict[int, float]:
    """Non-idle time of each of these CPUs so far, from /proc/stat (every process on it)."""
    busy: dict[int, float] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
            ticks = [int(f) for f in fields[:8]]
            busy[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK
    return busy


def timer_interrupts(cpu: int) -> int | None:
    """Local timer interrupts on this CPU so far (/proc/interrupts, LOC). Per request they
    show TCP pacing: with BBR on loopback every paced burst is a timer on the CPU that sent
    it (docs/performance.md, "The 1 MiB workload")."""
    try:
        lines = Path("/proc/interrupts").read_text().splitlines()
    except OSError:
        return None
    columns = lines[0].split()  # CPU0 CPU1 ...
    name = f"CPU{cpu}"
    if name not in columns:
        return None
    for line in lines[1:]:
        fields = line.split()
        if fields and fields[0] == "LOC:":
            return int(fields[1 + columns.index(name)])
    return None


def read_chunks(path: Path, size: int = 8 * MiB) -> Iterator[memoryview]:
    buf = bytearray(size)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            yield view[:n]


def warm(path: Path) -> None:
    """Read the whole file, so the timed phase reads from the page cache, not the disk."""
    for _ in read_chunks(path):
        pass


def link_root(files: TestFiles, root: Path) -> None:
    """A storage root for one artifactd holding hard links to the test files (same pages)."""
    root.mkdir()
    for name in files.names.values():
        os.link(files.data_dir / name, root / name)


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


# --- phases ---------------------------------------------------------------------------------


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


class Bench:
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


FILE_SERVERS = (*(name for name in ALL_SERVERS if name not in FLOORS), REFERENCE)
PHASE_SERVERS: dict[str, tuple[str, ...] | None] = {
    "large": FILE_SERVERS,
    "small": None,
    "medium": FILE_SERVERS,
    "ranges": None,
    "slow": FILE_SERVERS,
    "growth": ("artifactd", REFERENCE),
    "upload": ARTIFACTD_SERVERS,
}
WRK_PHASES = ("small", "medium", "ranges")


# --- the run --------------------------------------------------------------------------------


def choose_cpus() -> tuple[int | None, int | None]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]


def start_servers(cfg: Config, files: TestFiles, workdir: Path, results: Results) -> list[Server]:
    started: list[Server] = []
    nginx = find_tool("nginx")
    for name in cfg.servers:
        try:
            if name.startswith("artifactd"):
                root = workdir / f"root-{name}"
                link_root(files, root)
                loop = "asyncio" if name.endswith("asyncio") else "uvloop"
                src = cfg.compare_src if name == REFERENCE else cfg.artifactd_src
                server = start_artifactd(name, root, workdir, cfg.server_cpu, loop, src)
            elif name in FLOORS:
                low_level = name == LOW_LEVEL_FLOOR
                server = start_floor(name, files.data_dir, workdir, cfg.server_cpu, low_level)
            elif name.startswith("aiohttp"):
                loop = "asyncio" if name.endswith("asyncio") else "uvloop"
                server = start_fileresponse(name, files.data_dir, workdir, cfg.server_cpu, loop)
            elif name == "nginx":
                if nginx is None:
                    results.notes.append(
                        "nginx is not installed: its baseline and the targets against it are "
                        "omitted (`make bench` installs it with apt-get when run as root)"
                    )
                    continue
                server = start_nginx(name, nginx, files.data_dir, workdir, cfg.server_cpu)
            else:
                raise ValueError(name)
            prime(server, files)
        except (RuntimeError, OSError) as exc:
            results.errors.append(f"{name}: could not start: {exc}")
            print(f"!! {name} could not start: {exc}", file=sys.stderr)
            continue
        print(f"   {name}: {server.description} at {server.url} (pid {server.pid})")
        started.append(server)
    return started


def run_rounds(cfg: Config, bench: Bench, servers: list[Server]) -> None:
    have_wrk = find_tool("wrk") is not None
    have_curl = find_tool("curl") is not None
    if not have_wrk:
        bench.results.notes.append(
            "wrk is not installed: the 4 KiB, 1 MiB and range workloads are omitted "
            "(`make bench` installs it with apt-get when run as root)"
        )
    if not have_curl:
        bench.results.notes.append("curl is not installed: single-stream and upload omitted")
    for round_no in range(cfg.scale.rounds):
        shift = round_no % len(servers)
        order = servers[shift:] + servers[:shift]
        for phase in cfg.phases:
            if (phase in WRK_PHASES and not have_wrk) or (
                phase in ("large", "upload") and not have_curl
            ):
                continue
            allowed = PHASE_SERVERS[phase]
            for server in order:
                if allowed is not None and server.name not in allowed:
                    continue
                if not server.alive():
                    bench.results.errors.append(f"round {round_no + 1}: {server.name} has exited")
                    continue
                label = f"round {round_no + 1}/{cfg.scale.rounds} {phase:<6} {server.name}"
                print(f"   {label} ...", end="", flush=True)
                bench.wait_for_quiet()
                started = time.monotonic()
                try:
                    getattr(bench, phase)(server)
                except (BenchError, OSError, subprocess.SubprocessError, ValueError) as exc:
                    message = f"{label}: {type(exc).__name__}: {exc}"
                    bench.results.errors.append(message)
                    print(f" FAILED: {exc}", flush=True)
                    continue
                print(
                    f" {last_value(bench.results, phase, server.name)} "
                    f"({time.monotonic() - started:.1f}s)",
                    flush=True,
                )


def last_value(results: Results, phase: str, server: str) -> str:
    parts = []
    for metric in METRICS:
        if metric.key.startswith(phase + "_"):
            values = results.samples.get(metric.key, {}).get(server)
            if values:
                parts.append(f"{fmt(values[-1], metric)} {metric.unit}")
    runs = results.details.get(phase, {}).get(server)
    timers = runs[-1].get("server_core_timer_irqs_per_request") if runs else None
    if timers is not None:  # where TCP pacing ran: see docs/performance.md
        parts.append(f"{timers:.2f} timer IRQs/request on the server's core")
    return ", ".join(parts)


# --- report ---------------------------------------------------------------------------------


def fmt(value: float | None, metric: Metric) -> str:
    if value is None:
        return "–"
    if metric.decimals == 0:
        return f"{value:,.0f}"
    return f"{value:.{metric.decimals}f}"


def fmt_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


@dataclass(frozen=True)
class Target:
    key: str
    title: str
    metric: str
    baseline: str | None  # None: absolute threshold
    threshold: float
    at_most: bool  # value (or ratio) must be <= threshold


TARGETS = (
    Target(
        "large_cpu",
        "large files: server CPU per GiB ≤ 1.0× nginx",
        "large_cpu_s_per_gib",
        "nginx",
        1.0,
        True,
    ),
    Target(
        "large_throughput",
        "large files: throughput ≥ 0.95× nginx",
        "large_gbps",
        "nginx",
        0.95,
        False,
    ),
    Target(
        "medium_throughput",
        "1 MiB files: throughput ≥ 1.2× nginx",
        "medium_gbps",
        "nginx",
        1.2,
        False,
    ),
    Target(
        "small_rps",
        "4 KiB files: req/s ≥ 2.5× aiohttp FileResponse",
        "small_rps",
        "aiohttp",
        2.5,
        False,
    ),
    Target(
        "ranges_rps",
        "random 64 KiB ranges: req/s ≥ 2.5× aiohttp FileResponse",
        "ranges_rps",
        "aiohttp",
        2.5,
        False,
    ),
    Target(
        "slow_rss", "500 slow downloads: peak RSS ≤ 64 MiB", "slow_peak_rss_mib", None, 64.0, True
    ),
    Target(
        "slow_rss_growth",
        "500 slow downloads: no RSS growth with file size (≤ 1.1×)",
        "slow_peak_rss_mib",
        "growth",
        1.1,
        True,
    ),
    Target(
        "upload",
        "uploads: curl -T 1 GiB ≥ 1 GB/s including hashing",
        "upload_gbps",
        None,
        1.0,
        False,
    ),
)


def evaluate_targets(results: Results, server: str = "artifactd") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for target in TARGETS:
        metric = METRIC_BY_KEY[target.metric]
        value = results.median(target.metric, server)
        row: dict[str, Any] = {
            "key": target.key,
            "target": target.title,
            "metric": target.metric,
            "value": value,
            "threshold": target.threshold,
            "baseline": target.baseline,
        }
        if target.baseline == "growth":
            base = results.median("growth_peak_rss_mib", server)
            compared = value / base if value is not None and base else None
            detail = (
                f"{fmt(value, metric)} MiB with the large file vs {fmt(base, metric)} MiB "
                f"with the smaller one"
            )
        elif target.baseline is not None:
            base = results.median(target.metric, target.baseline)
            compared = results.ratio(target.metric, server, target.baseline)
            detail = (
                f"{fmt(value, metric)} vs {fmt(base, metric)} {metric.unit} "
                f"({BASELINES.get(target.baseline, target.baseline)})"
            )
            ceiling = results.ratio(target.metric, FLOOR, target.baseline)
            if ceiling is not None:
                row["ceiling"] = ceiling
                detail += f"; aiohttp floor {fmt_ratio(ceiling)}"
            low_level = results.ratio(target.metric, LOW_LEVEL_FLOOR, target.baseline)
            if low_level is not None:
                row["low_level_ceiling"] = low_level
                detail += f", low-level {fmt_ratio(low_level)}"
        else:
            base, compared = None, value
            detail = f"{fmt(value, metric)} {metric.unit}"
            if target.key == "upload":
                cpu = results.median("upload_cpu_s_per_gib", server)
                detail += f", server CPU {fmt(cpu, METRIC_BY_KEY['upload_cpu_s_per_gib'])} s/GiB"
                if results.upload_ceilings:
                    row["ceiling"] = min(results.upload_ceilings.values())
                    detail += "; this machine: " + ", ".join(
                        f"{name} {gbps:.2f} GB/s" for name, gbps in results.upload_ceilings.items()
                    )
        row["baseline_value"] = base
        row["compared"] = compared
        if compared is None:
            row["verdict"] = "SKIP"
        else:
            ok = compared <= target.threshold if target.at_most else compared >= target.threshold
            row["verdict"] = "PASS" if ok else "FAIL"
        row["detail"] = detail
        row["ratio_text"] = (
            "–"
            if compared is None
            else (fmt_ratio(compared) if target.baseline is not None else fmt(compared, metric))
        )
        rows.append(row)
    return rows


def render_tables(cfg: Config, results: Results, servers: list[str]) -> str:
    bases = [b for b in BASELINES if b in servers or b != REFERENCE]
    lines = [
        "| workload | server | median | min–max | n (disturbed) | "
        + " | ".join(f"× {BASELINES[b]}" for b in bases)
        + " |",
        "|---|---|---:|---:|---:|" + "---:|" * len(bases),
    ]
    for metric in METRICS:
        by_server = results.samples.get(metric.key)
        if not by_server:
            continue
        better = "higher" if metric.higher_is_better else "lower"
        title = f"{metric_title(metric, cfg)} ({metric.unit}, {better} is better)"
        first = True
        for server in servers:
            values = by_server.get(server)
            if not values:
                continue
            ratios = [
                "" if server == base else fmt_ratio(results.ratio(metric.key, server, base))
                for base in bases
            ]
            lines.append(
                f"| {title if first else ''} | {SERVER_TITLES.get(server, server)} | "
                f"{fmt(statistics.median(values), metric)} | "
                f"{fmt(min(values), metric)}–{fmt(max(values), metric)} | {len(values)}"
                f"{disturbed_text(results.disturbed(metric.key, server, cfg.quiet_threshold))} | "
                + " | ".join(ratios)
                + " |"
            )
            first = False
    lines += ["", diagnostics_table(cfg, results, servers)]
    return "\n".join(lines)


def disturbed_text(count: int) -> str:
    return f" ({count})" if count else ""


def diagnostics_table(cfg: Config, results: Results, servers: list[str]) -> str:
    """Medians of latency and of how busy server and client were during the wrk phases."""
    lines = [
        "| wrk workload | server | p50 ms | p99 ms | server process CPU | server core busy "
        "| wrk process CPU | client core busy | server-core timer IRQs per request |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    titles = {"small": "small_rps", "medium": "medium_gbps", "ranges": "ranges_rps"}
    for phase, metric_key in titles.items():
        by_server = results.details.get(phase, {})
        first = True
        for server in servers:
            runs = by_server.get(server)
            if not runs:
                continue

            def med(key: str, runs: list[dict[str, Any]] = runs) -> str:
                values = [float(r[key]) for r in runs if r.get(key) is not None]
                return f"{statistics.median(values):.0%}" if values else "–"

            timers = [
                float(r["server_core_timer_irqs_per_request"])
                for r in runs
                if r.get("server_core_timer_irqs_per_request") is not None
            ]
            timers_text = f"{statistics.median(timers):.2f}" if timers else "–"

            p50 = statistics.median(r["latency_us"]["p50"] for r in runs) / 1000
            p99 = statistics.median(r["latency_us"]["p99"] for r in runs) / 1000
            title = metric_title(METRIC_BY_KEY[metric_key], cfg) if first else ""
            lines.append(
                f"| {title} | {SERVER_TITLES.get(server, server)} | {p50:.2f} | {p99:.2f} | "
                f"{med('server_cpu_busy')} | {med('server_core_busy')} | "
                f"{med('client_cpu_busy')} | {med('client_core_busy')} | {timers_text} |"
            )
            first = False
    return "\n".join(lines)


def render_targets(rows: list[dict[str, Any]]) -> str:
    lines = ["| target (artifactd, default config) | measured | ratio or value | verdict |"]
    lines.append("|---|---|---:|---|")
    for row in rows:
        lines.append(
            f"| {row['target']} | {row['detail']} | {row['ratio_text']} | {row['verdict']} |"
        )
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "aiohttp": importlib.metadata.version("aiohttp"),
        "uvloop": importlib.metadata.version("uvloop"),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
    }
    for section, setting in (("ipv4", "tcp_congestion_control"), ("core", "default_qdisc")):
        try:
            info[setting] = Path(f"/proc/sys/net/{section}/{setting}").read_text().strip()
        except OSError:
            info[setting] = None
    nginx = find_tool("nginx")
    info["nginx"] = nginx_version(nginx) if nginx else None
    for tool in ("wrk", "curl"):
        path = find_tool(tool)
        if path is None:
            info[tool] = None
            continue
        flag = "-v" if tool == "wrk" else "--version"
        out = subprocess.run([path, flag], capture_output=True, text=True, timeout=10, check=False)
        info[tool] = (
            (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else path
        )
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        info["cpu_model"] = model
    except (OSError, StopIteration):
        pass
    return info


# --- entry point ----------------------------------------------------------------------------


def note_pacing(results: Results, machine: dict[str, Any]) -> None:
    """BBR paces every TCP socket with timers when the loopback has no fq qdisc; on this VM
    those timers moved the 1 MiB workload between two speeds (docs/performance.md)."""
    if machine.get("tcp_congestion_control") == "bbr":
        results.notes.append(
            "TCP congestion control is bbr: it paces each connection with timers, which fire "
            "on the core that sent (see 'server-core timer IRQs per request'); where the "
            "server's core takes them, the 1 MiB workload runs at about half speed"
        )


def note_quick_scale(cfg: Config, results: Results) -> None:
    """The targets are set for the full scale: a 64 MiB stream, say, is too short to judge
    a large-file target by."""
    if cfg.scale_name == "full":
        return
    rounds = cfg.scale.rounds
    results.notes.append(
        f"a quick run (scale {cfg.scale_name}: large file {human_size(cfg.scale.large)}, "
        f"{rounds} round{'s' if rounds != 1 else ''}): the targets are set for the full "
        "scale (`make bench`); short transfers and few samples make these verdicts "
        "indicative only"
    )


def note_noise(cfg: Config, results: Results) -> None:
    """Say how much of the run other processes disturbed (this machine may be shared)."""
    if cfg.quiet_threshold <= 0:
        return
    total = sum(len(v) for by in results.foreign.values() for v in by.values())
    disturbed = sum(
        results.disturbed(metric, server, cfg.quiet_threshold)
        for metric, by in results.foreign.items()
        for server in by
    )
    worst = max((f for by in results.foreign.values() for v in by.values() for f in v), default=0)
    results.notes.append(
        f"other processes on this machine: {disturbed} of {total} samples ran while they used "
        f"≥ {cfg.quiet_threshold:g} cores (worst {worst:.2f} cores; 'disturbed' in the table); "
        f"the harness waited {results.quiet_waited:.0f}s in all for quiet before phases"
    )


def parse_args(argv: list[str] | None) -> Config:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m bench.harness",
        description="artifactd vs nginx vs aiohttp FileResponse on this machine (issue 5).",
    )
    parser.add_argument(
        "--scale",
        choices=sorted(SCALES),
        default=env.get("BENCH_SCALE", "full"),
        help="full: 1 GiB/1 MiB/4 KiB files, 500 slow clients; small and tiny: quick runs "
        "(env BENCH_SCALE)",
    )
    parser.add_argument("--rounds", type=int, default=int(env.get("BENCH_ROUNDS", "0")) or None)
    parser.add_argument(
        "--servers",
        default=env.get("BENCH_SERVERS", ",".join(DEFAULT_SERVERS)),
        help=f"comma-separated, from {', '.join(ALL_SERVERS)} (env BENCH_SERVERS)",
    )
    parser.add_argument(
        "--workloads",
        default=env.get("BENCH_WORKLOADS", ",".join(PHASES)),
        help=f"comma-separated, from {', '.join(PHASES)} (env BENCH_WORKLOADS)",
    )
    parser.add_argument("--large-size", type=int, help="bytes of the large file")
    parser.add_argument("--wrk-duration", type=float, help="seconds per timed wrk run")
    parser.add_argument("--slow-clients", type=int, help="concurrent slow downloads")
    parser.add_argument("--slow-duration", type=float, help="seconds of slow downloading")
    parser.add_argument(
        "--artifactd-src",
        type=Path,
        default=env.get("BENCH_ARTIFACTD_SRC") or None,
        help="run artifactd from this directory (one holding an `artifactd` package) instead "
        "of the installed one (env BENCH_ARTIFACTD_SRC)",
    )
    parser.add_argument(
        "--compare-src",
        type=Path,
        default=env.get("BENCH_COMPARE_SRC") or None,
        help=f"also run {REFERENCE}: artifactd (uvloop) from this directory, e.g. a `git "
        "worktree` of an older commit, for before/after ratios in one run (env "
        "BENCH_COMPARE_SRC)",
    )
    parser.add_argument(
        "--quiet-threshold",
        type=float,
        default=float(env.get("BENCH_QUIET_THRESHOLD", "0.1")),
        help="before each phase, wait while other processes use this many cores or more; a "
        "sample measured while they did counts as disturbed (0: never wait; default 0.1)",
    )
    parser.add_argument(
        "--quiet-max-wait",
        type=float,
        default=60.0,
        help="seconds to wait for quiet before one phase (default 60; 900 in all per run)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    parser.add_argument("--workdir", type=Path, help="where to create the temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, files)")
    args = parser.parse_args(argv)

    scale = SCALES[args.scale]
    if args.rounds:
        scale = replace(scale, rounds=args.rounds)
    if args.large_size:
        scale = replace(scale, large=args.large_size)
    if args.wrk_duration:
        scale = replace(scale, wrk_duration=args.wrk_duration)
    if args.slow_clients:
        scale = replace(scale, slow_clients=args.slow_clients)
    if args.slow_duration:
        scale = replace(scale, slow_duration=args.slow_duration)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    phases = [p.strip() for p in args.workloads.split(",") if p.strip()]
    for name in servers:
        if name not in ALL_SERVERS:
            parser.error(f"unknown server {name!r}; choose from {', '.join(ALL_SERVERS)}")
    for phase in phases:
        if phase not in PHASES:
            parser.error(f"unknown workload {phase!r}; choose from {', '.join(PHASES)}")
    if scale.large < 64 * KiB * 2 or scale.rounds < 1:
        parser.error("the large file must hold at least two 64 KiB ranges; rounds >= 1")
    for src in (args.artifactd_src, args.compare_src):
        if src is not None and not (src / "artifactd" / "__init__.py").is_file():
            parser.error(f"{src} holds no artifactd package")
    if args.compare_src is not None and REFERENCE not in servers:
        servers.insert(1, REFERENCE)
    slow = SlowConfig(clients=scale.slow_clients, duration=scale.slow_duration)
    return Config(
        args.scale,
        scale,
        servers,
        phases,
        args.out,
        args.workdir,
        args.keep,
        slow,
        quiet_threshold=args.quiet_threshold,
        quiet_max_wait=args.quiet_max_wait,
        artifactd_src=args.artifactd_src.resolve() if args.artifactd_src else None,
        compare_src=args.compare_src.resolve() if args.compare_src else None,
    )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    results = Results()
    cfg.server_cpu, cfg.client_cpu = choose_cpus()
    if cfg.client_cpu is not None:
        os.sched_setaffinity(0, {cfg.client_cpu})  # clients inherit it
        results.notes.append(
            f"servers pinned to CPU {cfg.server_cpu}, clients (curl, wrk, the slow-download "
            f"client, page-cache warming) to CPU {cfg.client_cpu}"
        )
    else:
        results.notes.append("fewer than 2 CPUs available: server and clients are not pinned")
    workdir = Path(tempfile.mkdtemp(prefix="artifactd-bench-", dir=cfg.workdir))
    started_at = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    servers: list[Server] = []
    s = cfg.scale
    print(
        f"== artifactd bench, scale {cfg.scale_name}: files {human_size(s.large)}, "
        f"{human_size(s.medium)}, {human_size(s.small)}; {s.rounds} rounds; workdir {workdir}"
    )
    try:
        print("-- creating the test files")
        files = create_files(workdir, s)
        results.upload_ceilings = {
            "disk write+fsync": files.disk_write_gbps,
            "sha256 on one core": files.sha256_gbps,
        }
        results.notes.append(
            f"this machine: write+fsync of the large file {files.disk_write_gbps:.2f} GB/s, "
            f"sha256 in Python {files.sha256_gbps:.2f} GB/s (one core): ceilings for uploads"
        )
        print("-- starting servers")
        servers = start_servers(cfg, files, workdir, results)
        if not servers:
            print("no server could start", file=sys.stderr)
            return 1
        print("-- running")
        run_rounds(cfg, Bench(cfg, files, results), servers)
    except KeyboardInterrupt:
        print("\ninterrupted; reporting what was measured", file=sys.stderr)
        results.errors.append("interrupted")
    finally:
        for server in servers:
            server.stop()
        if cfg.keep:
            print(f"-- kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    names = [srv.name for srv in servers]
    note_noise(cfg, results)
    machine = machine_info()
    note_pacing(results, machine)
    note_quick_scale(cfg, results)
    targets = evaluate_targets(results)
    tables = render_tables(cfg, results, names)
    target_table = render_targets(targets)
    elapsed = time.monotonic() - t0
    print()
    print(tables)
    print()
    print(target_table)
    for note in results.notes:
        print(f"note: {note}")
    for error in results.errors:
        print(f"error: {error}")
    print(f"-- {elapsed:.0f}s in all")

    document = {
        "started_at": started_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "elapsed_s": round(elapsed, 1),
        "command": " ".join(
            [Path(sys.executable).name, "-m", "bench.harness", *(argv or sys.argv[1:])]
        ),
        "scale": cfg.scale_name,
        "config": {
            **{k: v for k, v in cfg.scale.__dict__.items()},
            "servers": names,
            "workloads": cfg.phases,
            "slow": cfg.slow.__dict__,
            "server_cpu": cfg.server_cpu,
            "client_cpu": cfg.client_cpu,
        },
        "machine": machine,
        "servers": {srv.name: srv.description for srv in servers},
        "metrics": {
            m.key: {
                "title": metric_title(m, cfg),
                "unit": m.unit,
                "higher_is_better": m.higher_is_better,
            }
            for m in METRICS
        },
        "summary": results.summary(),
        "ratios": {
            metric: {
                server: {base: results.ratio(metric, server, base) for base in BASELINES}
                for server in by_server
            }
            for metric, by_server in results.samples.items()
        },
        "targets": targets,
        "upload_ceilings_gbps": results.upload_ceilings,
        "samples": results.samples,
        "foreign_cores": results.foreign,
        "details": results.details,
        "notes": results.notes,
        "errors": results.errors,
    }
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(document, indent=2, default=str)
    (cfg.out_dir / f"{stamp}-{cfg.scale_name}.json").write_text(text)
    (cfg.out_dir / "latest.json").write_text(text)
    (cfg.out_dir / "latest.md").write_text(
        f"{tables}\n\n{target_table}\n\n" + "".join(f"- {n}\n" for n in results.notes)
    )
    print(f"-- results: {cfg.out_dir / 'latest.json'} (and latest.md)")
    return 1 if results.errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        sys.exit(2)
