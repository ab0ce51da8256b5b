"""The cache-mix workload's objects and targets: what each server stores before the timed
run, under which names, and a byte-exact check of the same mix (the smoke test's, and
the harness's before timing).

Object `i` has SIZES[i % 9] bytes (4 KiB to 1 MiB, mostly small, as build outputs are) and
is named as bench/mixclient.py names it: `<i as 6 digits>.bin` under a plain HTTP prefix, or
the Turborepo hash `<i as 16 hex digits>` under `/v8/artifacts/`.
"""

from __future__ import annotations

import http.client
import random
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench.clients import BenchError, _loopback

KiB = 1024
SIZES = (4 * KiB, 4 * KiB, 4 * KiB, 4 * KiB, 16 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, 1024 * KiB)
TURBO_QUERY = "?slug=bench"


@dataclass(frozen=True)
class MixTarget:
    """Where one server takes the mix: `base` is scheme, host and port."""

    base: str
    prefix: str  # e.g. /files/mix/
    style: str  # "files" or "turbo"
    query: str = ""
    token: str = ""

    def target(self, i: int) -> str:
        name = f"{i:016x}" if self.style == "turbo" else f"{i:06d}.bin"
        return f"{self.prefix}{name}{self.query}"

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/octet-stream"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers


def object_bytes(i: int) -> bytes:
    return random.Random(i).randbytes(SIZES[i % len(SIZES)])


def _connection(base: str) -> http.client.HTTPConnection:
    host, port, _ = _loopback(base + "/")
    return http.client.HTTPConnection(host, port, timeout=60)


def store_objects(target: MixTarget, count: int) -> None:
    """PUT objects 0..count-1 on one keep-alive connection (untimed)."""
    conn = _connection(target.base)
    try:
        for i in range(count):
            conn.request("PUT", target.target(i), body=object_bytes(i), headers=target.headers())
            response = conn.getresponse()
            body = response.read()
            if response.status not in (200, 201, 202, 204):
                raise BenchError(f"PUT {target.target(i)}: {response.status} {body[:200]!r}")
    finally:
        conn.close()


def check_mix(target: MixTarget, count: int, requests: int, seed: int = 1) -> dict[str, int]:
    """The mix's four operations in its proportions, each answer checked: a stored object's
    bytes (GET) or length (HEAD), 404 for an absent one, 2xx for a PUT and its bytes read
    back. Returns how many of each were checked."""
    rng = random.Random(seed)
    seen = {"get": 0, "miss": 0, "head": 0, "put": 0}
    conn = _connection(target.base)
    headers = target.headers()

    def ask(method: str, i: int, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        conn.request(method, target.target(i), body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    try:
        for n in range(requests):
            roll, i = rng.randrange(100), rng.randrange(count)
            if roll < 70:
                status, _, data = ask("GET", i)
                if (status, data == object_bytes(i)) != (200, True):
                    raise BenchError(f"GET {target.target(i)}: {status}, wrong or no bytes")
                seen["get"] += 1
            elif roll < 80:
                status, _, _ = ask("GET", count + 2**40 + i)
                if status != 404:
                    raise BenchError(f"GET of an absent object: {status}")
                seen["miss"] += 1
            elif roll < 90:
                status, got, data = ask("HEAD", i)
                # ducktors' server streams its answers: its HEAD has no Content-Length
                length = got.get("content-length")
                if (status, data) != (200, b"") or length not in (None, str(len(object_bytes(i)))):
                    raise BenchError(f"HEAD {target.target(i)}: {status} {length}")
                seen["head"] += 1
            else:
                new = count + (seed + 1) * 2**32 + n
                body = object_bytes(i)
                status, _, _ = ask("PUT", new, body)
                if status not in (200, 201, 202, 204):
                    raise BenchError(f"PUT {target.target(new)}: {status}")
                status, _, data = ask("GET", new)
                if (status, data == body) != (200, True):
                    raise BenchError(f"GET after PUT {target.target(new)}: {status}")
                seen["put"] += 1
    finally:
        conn.close()
    return seen


def base_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
