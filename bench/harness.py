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
a 64 MiB file to see whether memory grows with file size; uploads-small: 4 KiB and 64 KiB PUTs
to new paths, wrk -c16, artifactd (durable) against nginx's WebDAV PUT (not durable), with
this disk's ceiling for durable small writes (bench/fsync_ceiling.py); random-keys: GETs of
random keys among 100,000 4 KiB artifacts (wrk -c16, bench/wrk.lua mode=keys) against
artifactd's one-hot-path rate and nginx; cache-mix: GET hits, GET misses, HEADs and PUTs
(70/10/10/10, 4 KiB to 1 MiB) via /files/ against nginx WebDAV and via the Turborepo API
against ducktors' turborepo-remote-cache (bench/keyloads.py).

Environment: BENCH_SCALE, BENCH_ROUNDS, BENCH_SERVERS, BENCH_WORKLOADS stand for the flags.

This module only wires the run together: config (scales, servers, metrics, options), files
(the test files), keys and mix (the small objects), servers and clients (what runs and what
drives it; mixclient the cache mix's own), workloads and keyloads (one timed phase each), run
(the interleaved rounds), machine and noise (pinning, core use, other processes), results
(samples), targets (verdicts), report (tables, notes, JSON). The servers it measures beside
artifactd: baseline_fileresponse (aiohttp's FileResponse), baseline_floor with floor_put
(the aiohttp floors: measured ceilings, their PUT durable), nginx.conf.template, ducktors
(ducktors' turborepo-remote-cache, started); and fsync_ceiling, this disk's durable small-file
rate.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType

from bench.config import human_size, parse_args
from bench.files import create_files
from bench.fsync_ceiling import measure_all
from bench.keys import create_keys
from bench.machine import choose_cpus, machine_info
from bench.report import (
    note_noise,
    note_pacing,
    note_quick_scale,
    render_tables,
    results_document,
    write_results,
)
from bench.results import Results
from bench.run import run_rounds, start_servers
from bench.servers import Server
from bench.targets import evaluate_targets, render_targets
from bench.workloads import Bench


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
        if "random-keys" in cfg.phases:
            print(f"-- creating {s.keys:,} keys of 4 KiB")
            create_keys(files.data_dir, s.keys)
        dav = files.data_dir / "dav"  # nginx's WebDAV PUTs of the cache mix
        dav.mkdir()
        dav.chmod(0o777)
        results.upload_ceilings = {
            "disk write+fsync": files.disk_write_gbps,
            "sha256 on one core": files.sha256_gbps,
        }
        results.notes.append(
            f"this machine: write+fsync of the large file {files.disk_write_gbps:.2f} GB/s, "
            f"sha256 in Python {files.sha256_gbps:.2f} GB/s (one core): ceilings for uploads"
        )
        if "uploads-small" in cfg.phases:
            print("-- measuring this disk's durable small writes (bench/fsync_ceiling.py)")
            ceilings = measure_all(workdir, [16], 2.0)
            results.durable_files_per_s = max(c.files_per_second for c in ceilings)
            results.notes.append(
                "this disk: "
                + ", ".join(
                    f"{c.files_per_second:,.0f} new 4 KiB files/s durable with 16 writers, "
                    f"directory fsync {c.mode}"
                    for c in ceilings
                )
                + ": the ceiling for durable PUTs to new paths"
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

    document = results_document(
        cfg, results, servers, machine, targets, started_at, elapsed, argv or sys.argv[1:]
    )
    write_results(cfg, document, started_at, f"{tables}\n\n{target_table}\n\n", results.notes)
    print(f"-- results: {cfg.out_dir / 'latest.json'} (and latest.md)")
    return 1 if results.errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        sys.exit(2)
