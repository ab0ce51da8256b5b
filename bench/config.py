"""What one bench run is: file scales, the servers and workloads, the metrics, the options.

`parse_args` reads the flags (or the BENCH_* variables that stand for them) into a `Config`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from pathlib import Path

from bench.clients import SlowConfig

KiB, MiB, GiB = 1024, 1024**2, 1024**3
REPO = Path(__file__).resolve().parent.parent


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
    keys: int = 100_000  # 4 KiB artifacts of the random-keys workload
    mix_objects: int = 900  # stored objects of the cache mix (4 KiB to 1 MiB)


SCALES: dict[str, Scale] = {
    "full": Scale(GiB, MiB, 4 * KiB, 64 * MiB, 3, 5.0, 1.0, 2, 500, 8.0),
    "small": Scale(64 * MiB, MiB, 4 * KiB, 16 * MiB, 2, 2.0, 1.0, 2, 200, 3.0, 20_000, 270),
    "tiny": Scale(4 * MiB, 256 * KiB, 4 * KiB, MiB, 1, 1.0, 1.0, 1, 20, 1.0, 2_000, 45),
}

# "aiohttp-floor" (bench/baseline_floor.py) is no file server: a ceiling for artifactd's
# per-request cost on aiohttp, it runs the 4 KiB, range and small-object workloads (its PUT
# durable, bench/floor_put.py). "aiohttp-lowlevel" is the same below aiohttp's Application (a
# low-level web.Server), as artifactd's hot path. "aiohttp-floor-nofsync" is the first with
# PUTs that never fsync, as nginx's, and "aiohttp-floor-meta" the first with a durable SQLite
# row per PUT before its rename (bench/floor_meta.py), as the SPEC asks of artifactd's
# metadata: small uploads only.
FLOOR = "aiohttp-floor"
LOW_LEVEL_FLOOR = "aiohttp-lowlevel"
FLOORS = (FLOOR, LOW_LEVEL_FLOOR)
FLOOR_NO_FSYNC = "aiohttp-floor-nofsync"
FLOOR_META = "aiohttp-floor-meta"
PUT_FLOORS = (FLOOR_NO_FSYNC, FLOOR_META)  # the floors of the small uploads alone
# ducktors' turborepo-remote-cache (npm, local storage): the cache-mix workload only.
DUCKTORS = "ducktors"
ALL_SERVERS = (
    "artifactd",
    "artifactd-asyncio",
    "aiohttp",
    "aiohttp-asyncio",
    "nginx",
    *FLOORS,
    *PUT_FLOORS,
    DUCKTORS,
)
DEFAULT_SERVERS = (
    "artifactd",
    "artifactd-asyncio",
    "aiohttp",
    "nginx",
    *FLOORS,
    *PUT_FLOORS,
    DUCKTORS,
)
# With --compare-src: artifactd (uvloop, default config) from another checkout.
REFERENCE = "artifactd-ref"
ARTIFACTD_SERVERS = ("artifactd", "artifactd-asyncio", REFERENCE)
BASELINES = {
    "nginx": "nginx",
    "aiohttp": "aiohttp FileResponse",
    REFERENCE: "artifactd-ref",
    DUCKTORS: "ducktors' turborepo-remote-cache",
}
PHASES = (
    "large",
    "small",
    "medium",
    "ranges",
    "slow",
    "growth",
    "upload",
    "uploads-small",
    "random-keys",
    "cache-mix",
)
SERVER_TITLES = {
    "artifactd": "artifactd (uvloop)",
    "artifactd-asyncio": "artifactd --loop asyncio",
    "aiohttp": "aiohttp FileResponse (uvloop)",
    "aiohttp-asyncio": "aiohttp FileResponse (asyncio)",
    "nginx": "nginx",
    REFERENCE: "artifactd-ref (--compare-src)",
    FLOOR: "aiohttp floor",
    LOW_LEVEL_FLOOR: "aiohttp low-level floor (no Application)",
    FLOOR_NO_FSYNC: "aiohttp floor, PUT without fsync",
    FLOOR_META: "aiohttp floor, PUT with a durable SQLite row",
    DUCKTORS: "ducktors' turborepo-remote-cache (local storage)",
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
    Metric("put_4k_rps", "4 KiB PUTs to new paths, wrk -c16", "req/s", True, 0),
    Metric("put_64k_rps", "64 KiB PUTs to new paths, wrk -c16", "req/s", True, 0),
    Metric(
        "random_keys_rps", "GET of random keys among {keys} × 4 KiB, wrk -c16", "req/s", True, 0
    ),
    Metric("random_hot_rps", "GET of one of those keys (one hot path), wrk -c16", "req/s", True, 0),
    Metric("cache_mix_rps", "cache mix (GET/miss/HEAD/PUT 70/10/10/10), /files/", "req/s", True, 0),
    Metric("cache_mix_turbo_rps", "cache mix, Turborepo API /v8/artifacts/", "req/s", True, 0),
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


FILE_SERVERS = (
    *(name for name in ALL_SERVERS if name not in (*FLOORS, *PUT_FLOORS, DUCKTORS)),
    REFERENCE,
)
PHASE_SERVERS: dict[str, tuple[str, ...] | None] = {
    "large": FILE_SERVERS,
    "small": (*FILE_SERVERS, *FLOORS),
    "medium": FILE_SERVERS,
    "ranges": (*FILE_SERVERS, *FLOORS),
    "slow": FILE_SERVERS,
    "growth": ("artifactd", REFERENCE),
    "upload": ARTIFACTD_SERVERS,
    # nginx: WebDAV PUT (nginx.conf.template)
    "uploads-small": (*ARTIFACTD_SERVERS, "nginx", *FLOORS, *PUT_FLOORS),
    "random-keys": ("artifactd", REFERENCE, "nginx", *FLOORS),
    "cache-mix": ("artifactd", REFERENCE, "nginx", DUCKTORS, *FLOORS),
}
# Metrics of phases whose name does not prefix their keys.
PHASE_METRICS = {"uploads-small": ("put_4k_rps", "put_64k_rps")}
WRK_PHASES = ("small", "medium", "ranges", "uploads-small", "random-keys", "cache-mix")


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
        keys=f"{s.keys:,}",
    )


def fmt(value: float | None, metric: Metric) -> str:
    if value is None:
        return "–"
    if metric.decimals == 0:
        return f"{value:,.0f}"
    return f"{value:.{metric.decimals}f}"


def fmt_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


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
    parser.add_argument("--keys", type=int, help="4 KiB artifacts of the random-keys workload")
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
    if args.keys:
        scale = replace(scale, keys=args.keys)
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
