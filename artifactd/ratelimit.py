"""Per-client token buckets (time passed in, no I/O) and the client address behind proxies.

Each client has a bucket of `burst` tokens (default: `rate`), refilled at `rate` per
`period_seconds`; a request takes one token. In any window of T seconds a client therefore
gets at most `burst + rate * T / period_seconds` requests through.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from artifactd.errors import InvalidValueError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Float refills may land a hair under a whole token at exactly the Retry-After instant.
_ROUNDING_SLACK = 1e-9


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_at: float


class RateLimiter:
    """Token buckets keyed by client, least recently used first; O(1) amortised per check.

    Memory is bounded twice: a bucket that has refilled completely is the same as no bucket
    and is dropped, and beyond `max_clients` the least recently seen client is forgotten
    (it starts again with a full bucket: forgetting never refuses anyone).
    """

    def __init__(
        self,
        rate: int,
        period_seconds: float,
        max_clients: int = 100_000,
        *,
        burst: int | None = None,
    ) -> None:
        if rate < 1 or not period_seconds > 0 or max_clients < 1:
            raise InvalidValueError("rate, period and max_clients must be positive")
        self.rate = rate
        self.period_seconds = float(period_seconds)
        self.burst = rate if burst is None else burst
        if self.burst < 1:
            raise InvalidValueError("burst must be at least 1")
        self.max_clients = max_clients
        self._per_second = rate / self.period_seconds
        # Time for an empty bucket to be full again; older buckets are full by now.
        self._refill_seconds = self.burst / self._per_second
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        """How many clients are tracked right now."""
        return len(self._buckets)

    def check(self, client: str, now: float) -> float | None:
        """Take one token for `client`: None if allowed, else whole seconds (≥1) to wait."""
        self._drop_full_buckets(now)
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated_at=now)
            self._buckets[client] = bucket
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
            elapsed = max(0.0, now - bucket.updated_at)  # a clock going back adds nothing
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self._per_second)
            # Never move backwards: the drop order relies on updated_at only growing.
            bucket.updated_at = max(bucket.updated_at, now)
        if bucket.tokens >= 1.0 - _ROUNDING_SLACK:
            bucket.tokens = max(0.0, bucket.tokens - 1.0)
            return None
        return float(max(1, math.ceil((1.0 - bucket.tokens) / self._per_second)))

    def _drop_full_buckets(self, now: float) -> None:
        # Least recently updated first, so we stop at the first bucket still refilling.
        # Each bucket is dropped at most once per insertion: O(1) amortised.
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            if now - oldest.updated_at < self._refill_seconds:
                return
            self._buckets.popitem(last=False)


def parse_networks(cidrs: Sequence[str]) -> list[IPNetwork]:
    """`10.0.0.0/8`, `::1`, ... as networks (a bare address is a /32 or /128)."""
    networks: list[IPNetwork] = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError as exc:
            raise InvalidValueError(f"invalid proxy address or CIDR {cidr!r}") from exc
    return networks


def parse_address(text: str) -> IPAddress | None:
    """An IP address, IPv4-mapped IPv6 reduced to IPv4; None if `text` is not one."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return None
    return address


def is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


@functools.lru_cache(maxsize=1024)
def is_loopback(address: str | None) -> bool:
    """Cached: asked for every request that needs a token, of a handful of peers."""
    parsed = None if address is None else parse_address(address)
    return parsed is not None and parsed.is_loopback


def forwarded_chain(forwarded_for: str | None) -> list[IPAddress] | None:
    """The addresses of an X-Forwarded-For value, client first; None if any is malformed."""
    if not forwarded_for:
        return None
    chain: list[IPAddress] = []
    for item in forwarded_for.split(","):
        address = parse_address(item)
        if address is None:
            return None
        chain.append(address)
    return chain


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]
) -> str:
    """Who the client is, for rate limiting: the TCP peer, unless the peer is a trusted proxy.

    Then X-Forwarded-For is read right to left (each proxy appends the address it saw) and
    the first address that is not itself a trusted proxy is the client: the addresses left
    of it were written by the client and prove nothing. A malformed header is ignored.
    """
    peer_address = None if peer is None else parse_address(peer)
    if peer_address is None:
        return peer or "unknown"
    if not trusted or not is_trusted(peer_address, trusted):
        return str(peer_address)
    chain = forwarded_chain(forwarded_for)
    if chain is None:
        return str(peer_address)
    for address in reversed(chain):
        if not is_trusted(address, trusted):
            return str(address)
    return str(chain[0])  # every hop is a trusted proxy: the first one is the client
