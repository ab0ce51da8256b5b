"""The cache-mix load generator: keep-alive connections on one event loop, each sending the
mix's requests one after another (70 % GETs of stored objects, 10 % GETs of absent ones,
10 % HEADs, 10 % PUTs of new ones; `--only KIND` sends one kind alone) and checking each
answer's status and length.

Not wrk: wrk cannot take a HEAD's answer (its parser waits for the body Content-Length
announces, and the connection stalls), and HEADs are a tenth of a build cache's traffic.
Run as `python -m bench.mixclient` by the harness (pinned to the clients' CPU), it prints
one `MIXJSON {...}` line shaped like wrk's WRKJSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from dataclasses import dataclass, field

from bench.mix import SIZES, MixTarget


@dataclass
class Tally:
    requests: int = 0
    bytes: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    wrong: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


async def _read_response(reader: asyncio.StreamReader, head_only: bool) -> tuple[int, int, bool]:
    """Status, body length (Content-Length or chunked) and whether the server closes the
    connection after it (nginx does after `keepalive_requests`, 1,000 by default)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked, close = None, False, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            close = True
    if head_only or status in (204, 304):
        return status, 0, close
    if length is not None:
        await reader.readexactly(length)
        return status, length, close
    if chunked:
        total = 0
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            total += size
            if size == 0:
                return status, total, close
    raise ValueError(f"a {status} without a length")


# The request kinds, in the order of their share of the mix (percent; they sum to 100).
KINDS = (("get", 70), ("miss", 10), ("head", 10), ("put", 10))


def kind_of(roll: int) -> str:
    """The kind of request a roll in 0..99 draws: the mix's weights."""
    for kind, share in KINDS:
        if roll < share:
            return kind
        roll -= share
    raise ValueError("a roll is in 0..99")


async def _connection(
    target: MixTarget,
    count: int,
    seed: int,
    deadline: float,
    tally: Tally,
    slot: int,
    only: str | None = None,
) -> None:
    host_port = target.base.removeprefix("http://")
    host, port = host_port.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port), limit=2**20)
    rng = random.Random(seed * 1000 + slot)
    extra = "".join(f"{k}: {v}\r\n" for k, v in target.headers().items())
    bodies = {size: b"b" * size for size in set(SIZES)}
    puts = 0
    try:
        while time.monotonic() < deadline:
            roll, i = rng.randrange(100), rng.randrange(count)
            kind = only or kind_of(roll)
            body = b""
            if kind == "get":
                method, n, want = "GET", i, (200, SIZES[i % len(SIZES)])
            elif kind == "miss":
                method, n, want = "GET", count + 2**40 + i, (404, -1)
            elif kind == "head":
                method, n, want = "HEAD", i, (200, 0)
            else:
                puts += 1
                method, n = "PUT", count + (seed * 64 + slot + 1) * 2**32 + puts
                body, want = bodies[SIZES[i % len(SIZES)]], (201, 0)
            request = (
                f"{method} {target.target(n)} HTTP/1.1\r\nHost: {host_port}\r\n{extra}"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            started = time.monotonic()
            writer.write(request + body if len(body) < 65536 else request)
            if len(body) >= 65536:
                writer.write(body)
            await writer.drain()
            status, length, close = await _read_response(reader, method == "HEAD")
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection(host, int(port), limit=2**20)
            tally.latencies.append(time.monotonic() - started)
            tally.requests += 1
            tally.bytes += length
            tally.statuses[str(status)] = tally.statuses.get(str(status), 0) + 1
            ok = status == want[0] and want[1] in (-1, length)
            if method == "PUT":
                ok = status in (200, 201, 202, 204)
            if not ok and len(tally.wrong) < 10:
                tally.wrong.append(f"{method} {target.target(n)}: {status}, {length} bytes")
    finally:
        writer.close()


async def run(
    target: MixTarget,
    count: int,
    connections: int,
    duration: float,
    seed: int,
    only: str | None = None,
) -> Tally:
    """The mix for `duration` seconds; `only`: every request of that one kind instead."""
    tally = Tally()
    deadline = time.monotonic() + duration
    await asyncio.gather(
        *(
            _connection(target, count, seed, deadline, tally, slot, only)
            for slot in range(connections)
        )
    )
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mixclient")
    parser.add_argument("--base", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--style", choices=("files", "turbo"), required=True)
    parser.add_argument("--query", default="")
    parser.add_argument("--token", default="")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--only",
        choices=[kind for kind, _ in KINDS],
        help="send only this kind of request (the CPU of each kind, one at a time)",
    )
    args = parser.parse_args()
    target = MixTarget(args.base, args.prefix, args.style, args.query, args.token)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - installed with artifactd
        pass
    started = time.monotonic()
    tally = asyncio.run(
        run(target, args.count, args.connections, args.duration, args.seed, args.only)
    )
    seconds = time.monotonic() - started
    lat = sorted(tally.latencies) or [0.0]

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1e6

    print(
        "MIXJSON "
        + json.dumps(
            {
                "requests": tally.requests,
                "bytes": tally.bytes,
                "duration_us": int(seconds * 1e6),
                "statuses": tally.statuses,
                "wrong": tally.wrong,
                "latency_us": {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": pct(100)},
            }
        )
    )


if __name__ == "__main__":
    main()
