"""How artifactd's maintenance grows with the number of artifacts: N small (1 KiB) files
placed by hand under `cache/<i % 100>/` (so one directory holds N/100), then served by a
real `artifactd serve` process that indexes them itself (its first pass reconciles).

For each N it measures: placing the files; the first start (to /healthz, then until the
index holds all N); random GETs; listing one directory; paging all of /api/v1/artifacts;
/api/v1/stats; a restart; an eviction pass halving the store (--max-size at half) with the
longest /healthz answer during it; the server's peak RSS; and `ls`, `du` and `verify`
(time and peak RSS of the CLI process).

    .venv/bin/python -m bench.growth 1000 10000 100000 1000000 [--dir /some/disk]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from bench.servers import Server, start_artifactd

SIZE = 1024
FANOUT = 100
GETS = 2000
CONCURRENCY = 16


def place(root: Path, count: int) -> None:
    body = b"x" * SIZE
    for d in range(min(FANOUT, count)):
        (root / "cache" / f"{d:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        with open(root / "cache" / f"{i % FANOUT:02d}" / f"obj-{i:07d}", "wb") as f:
            f.write(body)


def artifact_path(i: int) -> str:
    return f"cache/{i % FANOUT:02d}/obj-{i:07d}"


async def timed(work: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await work()
    return time.perf_counter() - started


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Seconds until `check` holds (polled every 50 ms)."""
    started = time.perf_counter()
    while not await check():
        if time.perf_counter() - started > timeout:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


async def stats(session: aiohttp.ClientSession, server: Server) -> dict[str, int]:
    async with session.get(f"{server.url}/api/v1/stats") as response:
        result: dict[str, int] = await response.json()
        return result


async def healthz_seconds(session: aiohttp.ClientSession, server: Server) -> float:
    started = time.perf_counter()
    async with session.get(f"{server.url}/healthz") as response:
        await response.read()
    return time.perf_counter() - started


async def random_gets(session: aiohttp.ClientSession, server: Server, count: int) -> float:
    """GETs per second of random artifacts, CONCURRENCY at a time on keep-alive."""
    keys = [artifact_path(random.randrange(count)) for _ in range(GETS)]

    async def worker(mine: list[str]) -> None:
        for key in mine:
            async with session.get(server.files_url(key)) as response:
                assert response.status == 200, response.status
                await response.read()

    elapsed = await timed(
        lambda: asyncio.gather(*(worker(keys[i::CONCURRENCY]) for i in range(CONCURRENCY)))
    )
    return GETS / elapsed


async def page_everything(session: aiohttp.ClientSession, server: Server) -> tuple[int, float]:
    """(artifacts seen, slowest page in seconds) paging /api/v1/artifacts by 1000."""
    seen, slowest, cursor = 0, 0.0, None
    while True:
        query = "limit=1000" + (f"&cursor={cursor}" if cursor else "")
        started = time.perf_counter()
        async with session.get(f"{server.url}/api/v1/artifacts?{query}") as response:
            page = await response.json()
        slowest = max(slowest, time.perf_counter() - started)
        seen += len(page["artifacts"])
        cursor = page["next_cursor"]
        if cursor is None:
            return seen, slowest


def cli(root: Path, *args: str) -> tuple[float, int]:
    """(seconds, peak RSS in MB) of one `artifactd` command, its output discarded."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "artifactd", *args, "--root", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss // 1024


def peak_mb(server: Server) -> int:
    return server.peak_rss_kib() // 1024


async def measure(count: int, base: Path) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix=f"growth-{count}-", dir=base))
    root = work / "root"
    result: dict[str, object] = {"artifacts": count}
    try:
        started = time.perf_counter()
        await asyncio.to_thread(place, root, count)
        result["place_s"] = round(time.perf_counter() - started, 1)
        timeout = aiohttp.ClientTimeout(total=3600)
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            started = time.perf_counter()
            server = start_artifactd("growth", root, work, None)
            try:
                result["first_start_s"] = round(time.perf_counter() - started, 2)

                async def indexed() -> bool:
                    return (await stats(session, server))["artifacts"] == count

                result["index_s"] = round(await wait_until(indexed, 7200), 1)
                result["random_get_per_s"] = round(await random_gets(session, server, count))
                listing = f"{server.url}/files/cache/00/?format=json"

                async def list_one() -> None:
                    async with session.get(listing) as response:
                        await response.read()

                result["list_dir_s"] = round(
                    statistics.median([await timed(list_one) for _ in range(3)]), 3
                )
                result["dir_entries"] = (count + FANOUT - 1) // FANOUT
                started = time.perf_counter()
                seen, slowest = await page_everything(session, server)
                assert seen == count, seen
                result["page_all_s"] = round(time.perf_counter() - started, 1)
                result["slowest_page_s"] = round(slowest, 3)
                result["stats_s"] = round(
                    statistics.median(
                        [await timed(lambda: stats(session, server)) for _ in range(5)]
                    ),
                    4,
                )
                result["server_peak_mb"] = peak_mb(server)
            finally:
                server.stop()
            started = time.perf_counter()
            server = start_artifactd("growth", root, work, None)
            try:
                await healthz_seconds(session, server)
                result["restart_s"] = round(time.perf_counter() - started, 2)
            finally:
                server.stop()
            for command in ("ls", "du"):
                seconds, rss = await asyncio.to_thread(cli, root, command)
                result[f"cli_{command}_s"], result[f"cli_{command}_mb"] = round(seconds, 1), rss
            half = count * SIZE // 2
            server = start_artifactd(
                "growth", root, work, None, extra_args=["--max-size", str(half)]
            )
            try:
                slowest_health = 0.0

                async def evicted() -> bool:
                    nonlocal slowest_health
                    slowest_health = max(slowest_health, await healthz_seconds(session, server))
                    return (await stats(session, server))["bytes"] <= half

                result["evict_pass_s"] = round(await wait_until(evicted, 7200), 1)
                result["evict_slowest_healthz_s"] = round(slowest_health, 3)
                result["evict_server_peak_mb"] = peak_mb(server)
            finally:
                server.stop()
            seconds, rss = await asyncio.to_thread(cli, root, "verify")
            result["cli_verify_s"], result["cli_verify_mb"] = round(seconds, 1), rss
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("counts", type=int, nargs="*", default=[1000, 10_000])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    for count in args.counts:
        print(json.dumps(asyncio.run(measure(count, args.dir))), flush=True)


if __name__ == "__main__":
    main()
