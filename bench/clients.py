"""The client side of the bench: curl, wrk (with bench/wrk.lua), slow raw-socket downloads,
uploads, and byte-exact checks. Every client talks only to 127.0.0.1, and every loop here is
bounded in count and in time.

The harness times these; the smoke test (tests/process/test_bench_smoke.py) runs them at tiny
sizes against a real artifactd and checks only correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import random
import resource
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.servers import find_tool

BENCH_DIR = Path(__file__).resolve().parent
WRK_SCRIPT = BENCH_DIR / "wrk.lua"
LOOPBACK = "127.0.0.1"


class BenchError(RuntimeError):
    """A client saw a wrong answer (status, length or bytes)."""


def _loopback(url: str) -> tuple[str, int, str]:
    """Host, port and path of a URL, refusing anything but 127.0.0.1."""
    parts = urlsplit(url)
    if parts.hostname != LOOPBACK or parts.port is None:
        raise ValueError(f"the bench talks only to {LOOPBACK} with an explicit port: {url}")
    return parts.hostname, parts.port, parts.path or "/"


def children_cpu_seconds() -> float:
    """CPU time of this process's reaped children (the client tools run as children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- curl -----------------------------------------------------------------------------------


@dataclass
class CurlResult:
    status: int
    bytes: int
    seconds: float

    @property
    def gbps(self) -> float:
        return self.bytes / self.seconds / 1e9 if self.seconds > 0 else 0.0


def _curl(args: list[str], url: str, timeout: float) -> CurlResult:
    _loopback(url)
    curl = find_tool("curl")
    if curl is None:
        raise BenchError("curl is not installed")
    write_out = "%{http_code} %{size_download} %{size_upload} %{time_total}"
    cmd = [curl, "-sS", "--noproxy", "*", *args, "-w", write_out, url]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise BenchError(f"curl failed ({result.returncode}): {result.stderr.strip()}")
    status, down, up, total = result.stdout.strip().split()[-4:]
    return CurlResult(int(status), max(int(down), int(up)), float(total))


def curl_download(
    url: str, *, expected_size: int, out: Path | None = None, timeout: float = 300.0
) -> CurlResult:
    """One GET with curl into `out` (or /dev/null); must be a 200 of `expected_size` bytes."""
    result = _curl(["-o", str(out) if out else "/dev/null"], url, timeout)
    if result.status != 200 or result.bytes != expected_size:
        raise BenchError(
            f"GET {url}: status {result.status}, {result.bytes} bytes, expected 200 and "
            f"{expected_size}"
        )
    return result


def curl_upload(url: str, source: Path, *, timeout: float = 300.0) -> tuple[CurlResult, bytes]:
    """`curl -T source url` (a PUT); must answer 200 or 201. Returns the result and the body."""
    body_path = source.with_name(source.name + ".put-response")
    try:
        result = _curl(["-T", str(source), "-o", str(body_path)], url, timeout)
        body = body_path.read_bytes() if body_path.exists() else b""
    finally:
        body_path.unlink(missing_ok=True)
    if result.status not in (200, 201):
        raise BenchError(f"PUT {url}: status {result.status}: {body[:300]!r}")
    result.bytes = source.stat().st_size
    return result, body


# --- plain HTTP (checks and small requests) -------------------------------------------------


def http_request(
    url: str, method: str = "GET", headers: dict[str, str] | None = None, timeout: float = 30.0
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: status, headers (lower-case names), body."""
    host, port, path = _loopback(url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def check_ranges(
    url: str, expected: bytes, *, count: int, length: int, seed: int = 1, timeout: float = 30.0
) -> int:
    """`count` random single ranges on one keep-alive connection; each must be a 206 with
    the right Content-Range and bytes. Returns how many were checked."""
    host, port, path = _loopback(url)
    rng = random.Random(seed)
    size = len(expected)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        for _ in range(count):
            first = rng.randrange(0, max(1, size - length + 1))
            last = min(size, first + length) - 1
            conn.request("GET", path, headers={"Range": f"bytes={first}-{last}"})
            response = conn.getresponse()
            body = response.read()
            want_range = f"bytes {first}-{last}/{size}"
            if response.status != 206 or response.getheader("Content-Range") != want_range:
                raise BenchError(
                    f"Range {first}-{last} of {url}: {response.status} "
                    f"{response.getheader('Content-Range')!r}, expected 206 {want_range!r}"
                )
            if body != expected[first : last + 1]:
                raise BenchError(f"Range {first}-{last} of {url}: wrong bytes")
    finally:
        conn.close()
    return count


# --- wrk ------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    bytes: int
    seconds: float
    errors: dict[str, int]
    latency_us: dict[str, float]
    statuses: dict[str, int]
    client_cpu_seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def gbps(self) -> float:
        return self.bytes / self.seconds / 1e9 if self.seconds > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rps": self.rps, "gbps": self.gbps}


def run_wrk(
    url: str,
    *,
    connections: int,
    duration: float,
    threads: int = 1,
    ranges: tuple[int, int] | None = None,
    put: tuple[int, str] | None = None,
    keys: int | None = None,
    check: bool = False,
    seed: int = 1,
    timeout: float = 10.0,
) -> WrkResult:
    """Run wrk with bench/wrk.lua for `duration` seconds; `ranges=(size, length)` asks for
    random ranges of a `size`-byte file; `put=(size, tag)` PUTs `put_body(size)` to new paths
    under the URL (`<tag>-<thread>-<n>`, n from 1); `keys=N` GETs random keys among N under
    the URL (bench/keys.py's names). With `check`, every response's status is counted."""
    _loopback(url)
    wrk = find_tool("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed")
    script_args = [f"seed={seed}", f"check={int(check)}"]
    if ranges is not None:
        script_args += ["mode=ranges", f"size={ranges[0]}", f"length={ranges[1]}"]
    if put is not None:
        script_args += ["mode=put", f"size={put[0]}", f"tag={put[1]}"]
    if keys is not None:
        script_args += ["mode=keys", f"count={keys}"]
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s"]
    cmd += [f"--timeout={timeout:g}s", "-s", str(WRK_SCRIPT), url, "--", *script_args]
    before = children_cpu_seconds()
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=duration + timeout + 30, check=False
    )
    client_cpu = children_cpu_seconds() - before
    line = next((x for x in result.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if result.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({result.returncode}): {result.stderr}{result.stdout}")
    data = json.loads(line.removeprefix("WRKJSON "))
    return WrkResult(
        requests=int(data["requests"]),
        bytes=int(data["bytes"]),
        seconds=data["duration_us"] / 1e6,
        errors={k: int(v) for k, v in data["errors"].items()},
        latency_us={k: float(v) for k, v in data["latency_us"].items()},
        statuses={str(k): int(v) for k, v in data["statuses"].items()},
        client_cpu_seconds=client_cpu,
    )


PUT_LINE = b"artifactd bench upload\n"


def put_body(size: int) -> bytes:
    """The body of every PUT of `size` bytes that bench/wrk.lua sends (mode=put)."""
    return (PUT_LINE * (size // len(PUT_LINE) + 1))[:size]


def validate_puts(result: WrkResult, *, checked: bool) -> None:
    """Raise unless every PUT was answered 201 (counted when `checked`; otherwise wrk counts
    any status that is not 2xx or 3xx as an error) and none failed."""
    if result.requests == 0:
        raise BenchError("wrk completed no request")
    if result.error_count:
        raise BenchError(f"wrk saw errors: {result.errors} (statuses {result.statuses})")
    if checked and result.statuses != {"201": result.requests}:
        raise BenchError(f"expected every status to be 201, got {result.statuses}")


def validate_wrk(
    result: WrkResult, *, body_size: int, status: int, checked: bool, connections: int = 1
) -> None:
    """Raise unless every response had the expected status (when counted), there were no
    errors, and the bytes per response fit `body_size` plus headers (wrk also counts the bytes
    of the responses still in flight on each connection when time is up)."""
    if result.requests == 0:
        raise BenchError("wrk completed no request")
    if result.error_count:
        raise BenchError(f"wrk saw errors: {result.errors}")
    if checked and result.statuses != {str(status): result.requests}:
        raise BenchError(f"expected every status to be {status}, got {result.statuses}")
    per_response = result.bytes / result.requests
    in_flight = connections * (body_size + 4096) / result.requests
    if not body_size <= per_response <= body_size + 4096 + in_flight:
        raise BenchError(
            f"{per_response:.0f} bytes per response, expected {body_size} plus headers"
        )


# --- slow downloads -------------------------------------------------------------------------


@dataclass
class SlowConfig:
    clients: int = 500
    duration: float = 8.0
    read_size: int = 16 * 1024
    interval: float = 0.1
    rcvbuf: int = 4096
    connect_timeout: float = 10.0
    max_connecting: int = 64


@dataclass
class SlowResult:
    clients: int
    connected: int = 0
    status_ok: int = 0
    completed: int = 0
    truncated: int = 0
    bytes: int = 0
    mismatches: int = 0
    errors: list[str] = field(default_factory=list)
    samples: int = 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["errors"] = self.errors[:10]
        data["error_count"] = len(self.errors)
        return data


async def _slow_client(
    url: str,
    cfg: SlowConfig,
    expected: bytes | None,
    size: int,
    result: SlowResult,
    deadline: float,
    gate: asyncio.Semaphore,
) -> None:
    host, port, path = _loopback(url)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Set before connecting, so the advertised window stays small.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, cfg.rcvbuf)
        sock.setblocking(False)
        async with gate:
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), cfg.connect_timeout)
        result.connected += 1
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: bench-slow\r\n\r\n"
        await loop.sock_sendall(sock, request.encode())
        head = b""
        offset = -1  # body offset; -1 until the headers are complete
        await asyncio.sleep(random.uniform(0, cfg.interval))
        while (remaining := deadline - loop.time()) > 0:
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, cfg.read_size), remaining)
            except TimeoutError:
                break
            if not data:
                result.truncated += 1  # the server closed before the end of the body
                break
            if offset < 0:
                head += data
                end = head.find(b"\r\n\r\n")
                if end < 0:
                    if len(head) > 16384:
                        raise BenchError("no end of headers in 16 KiB")
                    continue
                if not head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 ")):
                    raise BenchError(f"status line {head.split(b' ', 2)[:2]!r}")
                result.status_ok += 1
                data, offset = head[end + 4 :], 0
            if expected is not None and data != expected[offset : offset + len(data)]:
                result.mismatches += 1
                break
            offset += len(data)
            result.bytes += len(data)
            if offset >= size:
                result.completed += 1
                break
            await asyncio.sleep(cfg.interval)
    except (OSError, BenchError, TimeoutError) as exc:
        result.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        sock.close()


async def slow_downloads_async(
    url: str,
    *,
    size: int,
    cfg: SlowConfig,
    expected: bytes | None = None,
    sample: Callable[[], None] | None = None,
    sample_interval: float = 0.05,
) -> SlowResult:
    """`cfg.clients` concurrent GETs of `url` that each read at most `read_size` bytes every
    `interval` seconds through a small receive buffer, for `duration` seconds. `sample` is
    called every `sample_interval` seconds meanwhile (the harness reads server RSS there)."""
    loop = asyncio.get_running_loop()
    result = SlowResult(clients=cfg.clients)
    deadline = loop.time() + cfg.duration
    gate = asyncio.Semaphore(cfg.max_connecting)
    tasks = [
        asyncio.create_task(_slow_client(url, cfg, expected, size, result, deadline, gate))
        for _ in range(cfg.clients)
    ]
    try:
        while loop.time() < deadline and not all(t.done() for t in tasks):
            if sample is not None:
                sample()
                result.samples += 1
            await asyncio.sleep(sample_interval)
        if sample is not None:
            sample()
            result.samples += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks), cfg.connect_timeout + 5)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
    return result


def slow_downloads(
    url: str,
    *,
    size: int,
    cfg: SlowConfig,
    expected: bytes | None = None,
    sample: Callable[[], None] | None = None,
) -> SlowResult:
    """`slow_downloads_async` on a fresh event loop of its own."""
    return asyncio.run(
        slow_downloads_async(url, size=size, cfg=cfg, expected=expected, sample=sample)
    )


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
