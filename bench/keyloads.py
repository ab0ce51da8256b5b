"""The workloads of many small objects: random keys (cold reads) and a build cache's mix.

random-keys: GETs of random keys among `Scale.keys` 4 KiB artifacts (bench/keys.py), wrk
-c16 with bench/wrk.lua mode=keys, on artifactd and nginx over the same files; on artifactd
also GETs of one of those keys (its one-hot-path rate, the ratio's baseline), and on the
aiohttp floors (the ceiling of that ratio on this stack).
cache-mix: a 70/10/10/10 mix of GET hits, GET misses, HEADs and PUTs (4 KiB to 1 MiB,
bench/mix.py), 16 keep-alive connections of bench/mixclient.py (wrk cannot do HEADs):
through artifactd's /files/ and nginx's WebDAV location, and through the Turborepo API of
artifactd and of ducktors' turborepo-remote-cache.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any

from bench import clients
from bench.clients import BenchError, WrkResult
from bench.config import REPO, Config
from bench.ducktors import DUCKTORS_TOKEN
from bench.keys import KEY_SIZE, key_name
from bench.mix import TURBO_QUERY, MixTarget, base_of
from bench.results import Results
from bench.servers import Server

CONNECTIONS = 16
MIX_STATUSES = {"200", "201", "202", "204", "404"}


def mix_targets(url: str, kind: str, name: str = "") -> dict[str, MixTarget]:
    """metric -> where a server of `kind` at `url` (named `name`) takes the cache mix."""
    base = base_of(url)
    if kind == "artifactd":
        return {
            "cache_mix_rps": MixTarget(base, "/files/mix/", "files"),
            "cache_mix_turbo_rps": MixTarget(base, "/turbo/v8/artifacts/", "turbo", TURBO_QUERY),
        }
    if kind == "nginx":
        return {"cache_mix_rps": MixTarget(base, "/dav/mix/", "files")}
    if kind == "floor":  # each floor its own directory of the data dir they share
        prefix = f"/files/mix-{name}/" if name else "/files/mix/"
        return {"cache_mix_rps": MixTarget(base, prefix, "files")}
    if kind == "ducktors":
        return {
            "cache_mix_turbo_rps": MixTarget(
                base, "/v8/artifacts/", "turbo", TURBO_QUERY, DUCKTORS_TOKEN
            )
        }
    return {}


def run_mix(
    target: MixTarget, count: int, duration: float, seed: int = 1, only: str | None = None
) -> WrkResult:
    """bench/mixclient.py for `duration` seconds, as a child process (on the clients' CPU,
    its CPU time counted as the client's): its result in wrk's shape. `only`: one kind of
    request instead of the mix (bench.mixclient.KINDS)."""
    cmd = [sys.executable, "-m", "bench.mixclient", f"--count={count}"]
    if only is not None:
        cmd.append(f"--only={only}")
    cmd += [f"--base={target.base}", f"--prefix={target.prefix}", f"--style={target.style}"]
    cmd += [f"--query={target.query}", f"--token={target.token}"]
    cmd += [f"--connections={CONNECTIONS}", f"--duration={duration}", f"--seed={seed}"]
    before = clients.children_cpu_seconds()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=duration + 60, check=False, env=env, cwd=REPO
    )
    client_cpu = clients.children_cpu_seconds() - before
    line = next((x for x in done.stdout.splitlines() if x.startswith("MIXJSON ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"the mix client failed ({done.returncode}): {done.stderr[-2000:]}")
    data = json.loads(line.removeprefix("MIXJSON "))
    if data["wrong"]:
        raise BenchError(f"wrong answers in the cache mix: {data['wrong']}")
    return WrkResult(
        requests=int(data["requests"]),
        bytes=int(data["bytes"]),
        seconds=data["duration_us"] / 1e6,
        errors={},
        latency_us={k: float(v) for k, v in data["latency_us"].items()},
        statuses={str(k): int(v) for k, v in data["statuses"].items()},
        client_cpu_seconds=client_cpu,
    )


def validate_mix(result: WrkResult) -> None:
    """Only the mix's statuses (2xx, and 404 for the misses, about a tenth of all)."""
    if result.requests == 0:
        raise BenchError("the mix client completed no request")
    if not set(result.statuses) <= MIX_STATUSES:
        raise BenchError(f"unexpected statuses in the cache mix: {result.statuses}")
    misses = result.statuses.get("404", 0) / result.requests
    if result.requests >= 100 and not 0.03 <= misses <= 0.2:
        raise BenchError(f"{misses:.0%} of the mix were 404s, expected about 10 %")


class KeyWorkloads:
    """Bench's phases of many small objects (a mixin: Bench holds the attributes)."""

    cfg: Config
    results: Results

    def timed(self, server: Server) -> Any:
        raise NotImplementedError  # Bench's

    def add(self, metric: str, server: Server, value: float, timing: Any) -> None:
        raise NotImplementedError  # Bench's

    def _timed_wrk(self, server: Server, metric: str, url: str, keys: int | None) -> WrkResult:
        scale = self.cfg.scale
        with self.timed(server) as timing:
            result = clients.run_wrk(
                url,
                connections=CONNECTIONS,
                duration=scale.wrk_duration,
                keys=keys,
            )
        self.add(metric, server, result.rps, timing)
        self.results.detail(
            metric.removesuffix("_rps"),
            server.name,
            {
                **result.as_dict(),
                **timing.as_dict(),
                "server_cpu_us_per_request": timing.server_cpu / max(1, result.requests) * 1e6,
                "server_cpu_busy": timing.server_cpu / result.seconds,
            },
        )
        return result

    def random_keys(self, server: Server) -> None:
        scale = self.cfg.scale
        files = server.files_url("")
        # The warm-up reads another sequence of keys than the timed run (whose seed is 1): a
        # replay of the same keys seconds later would find some still hot, as a cache's
        # random reads would not.
        check = clients.run_wrk(
            files,
            connections=CONNECTIONS,
            duration=scale.wrk_warmup,
            check=True,
            keys=scale.keys,
            seed=2,
        )
        clients.validate_wrk(
            check, body_size=KEY_SIZE, status=200, checked=True, connections=CONNECTIONS
        )
        result = self._timed_wrk(server, "random_keys_rps", files, scale.keys)
        clients.validate_wrk(
            result, body_size=KEY_SIZE, status=200, checked=False, connections=CONNECTIONS
        )
        # The baseline: one key, again and again; the floors' too, whose ratio of random
        # keys to one key is the ceiling of artifactd's on this stack.
        if server.kind in ("artifactd", "floor"):
            url = server.files_url(key_name(0))
            hot = self._timed_wrk(server, "random_hot_rps", url, None)
            clients.validate_wrk(
                hot, body_size=KEY_SIZE, status=200, checked=False, connections=CONNECTIONS
            )

    def cache_mix(self, server: Server) -> None:
        scale = self.cfg.scale
        for metric, target in mix_targets(server.url, server.kind, server.name).items():
            validate_mix(run_mix(target, scale.mix_objects, scale.wrk_warmup, seed=2))
            with self.timed(server) as timing:
                result = run_mix(target, scale.mix_objects, scale.wrk_duration)
            validate_mix(result)
            self.add(metric, server, result.rps, timing)
            self.results.detail(
                metric.removesuffix("_rps"),
                server.name,
                {
                    **result.as_dict(),
                    **timing.as_dict(),
                    "server_cpu_us_per_request": timing.server_cpu / result.requests * 1e6,
                    "server_cpu_busy": timing.server_cpu / result.seconds,
                    "client_cpu_busy": result.client_cpu_seconds / result.seconds,
                },
            )


PER_REQUEST_PHASES = ("random_keys", "random_hot", "cache_mix", "cache_mix_turbo")


def per_request_table(results: Results, servers: list[str], titles: dict[str, str]) -> str:
    """Server CPU per request and the share of its core the server process had: on a shared
    machine, req/s also measures how much of the core other processes left."""
    lines = [
        "| small-object workload | server | server CPU per request (µs) | server process CPU |",
        "|---|---|---:|---:|",
    ]
    for phase in PER_REQUEST_PHASES:
        by_server = results.details.get(phase, {})
        first = True
        for server in servers:
            runs = by_server.get(server)
            if not runs:
                continue
            cpu = statistics.median(float(r["server_cpu_us_per_request"]) for r in runs)
            busy = statistics.median(float(r["server_cpu_busy"]) for r in runs)
            title = phase.replace("_", " ") if first else ""
            lines.append(f"| {title} | {titles.get(server, server)} | {cpu:.0f} | {busy:.0%} |")
            first = False
    return "\n".join(lines)
