"""One run: start every server on its own storage root, then the rounds of workloads."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.clients import BenchError
from bench.config import (
    DUCKTORS,
    FLOOR_META,
    FLOOR_NO_FSYNC,
    FLOORS,
    LOW_LEVEL_FLOOR,
    METRICS,
    PHASE_METRICS,
    PHASE_SERVERS,
    PUT_FLOORS,
    REFERENCE,
    WRK_PHASES,
    Config,
    fmt,
)
from bench.ducktors import find_ducktors, start_ducktors
from bench.files import TestFiles, link_root
from bench.keyloads import mix_targets
from bench.keys import link_keys, record_keys
from bench.mix import store_objects
from bench.results import Results
from bench.servers import (
    Server,
    find_tool,
    start_artifactd,
    start_fileresponse,
    start_floor,
    start_nginx,
)
from bench.workloads import Bench, prime


def start_servers(cfg: Config, files: TestFiles, workdir: Path, results: Results) -> list[Server]:
    started: list[Server] = []
    nginx = find_tool("nginx")
    for name in cfg.servers:
        try:
            if name.startswith("artifactd"):
                root = workdir / f"root-{name}"
                link_root(files, root)
                keys = cfg.scale.keys
                if "random-keys" in cfg.phases and name in (PHASE_SERVERS["random-keys"] or ()):
                    print(f"   {name}: linking and recording {keys:,} keys")
                    link_keys(files.data_dir, root, keys)
                    record_keys(root, keys)
                loop = "asyncio" if name.endswith("asyncio") else "uvloop"
                src = cfg.compare_src if name == REFERENCE else cfg.artifactd_src
                server = start_artifactd(name, root, workdir, cfg.server_cpu, loop, src)
            elif name in (*FLOORS, *PUT_FLOORS):
                server = start_floor(
                    name,
                    files.data_dir,
                    workdir,
                    cfg.server_cpu,
                    low_level=name == LOW_LEVEL_FLOOR,
                    fsync=name != FLOOR_NO_FSYNC,
                    metadata=name == FLOOR_META,
                )
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
            elif name == DUCKTORS:
                binary = find_ducktors()
                if binary is None:
                    results.notes.append(
                        "ducktors' turborepo-remote-cache is not installed (bench/install_npm.sh "
                        "needs npm): its baseline and the cache-mix target against it are omitted"
                    )
                    continue
                if "cache-mix" not in cfg.phases:
                    continue
                server = start_ducktors(name, binary, workdir, cfg.server_cpu)
            else:
                raise ValueError(name)
            try:
                if server.kind != "ducktors":
                    prime(server, files)
                if "cache-mix" in cfg.phases and name in (PHASE_SERVERS["cache-mix"] or ()):
                    for target in mix_targets(server.url, server.kind, server.name).values():
                        store_objects(target, cfg.scale.mix_objects)
            except BaseException:
                server.stop()  # not left running when it cannot take part
                raise
        except (RuntimeError, OSError, BenchError) as exc:
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
                    getattr(bench, phase.replace("-", "_"))(server)
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
        # "random-keys" -> random_keys_rps and random_hot_rps; "cache-mix" -> cache_mix_*
        prefix = phase.replace("-", "_").split("_")[0] + "_"
        if metric.key.startswith(prefix) or metric.key in PHASE_METRICS.get(phase, ()):
            values = results.samples.get(metric.key, {}).get(server)
            if values:
                parts.append(f"{fmt(values[-1], metric)} {metric.unit}")
    runs = results.details.get(phase, {}).get(server)
    timers = runs[-1].get("server_core_timer_irqs_per_request") if runs else None
    if timers is not None:  # where TCP pacing ran: see docs/performance.md
        parts.append(f"{timers:.2f} timer IRQs/request on the server's core")
    return ", ".join(parts)
