"""Prometheus metrics (prometheus-client), one registry per application.

Under `--workers N` the supervisor sets PROMETHEUS_MULTIPROC_DIR, every worker writes its
samples there, and `/metrics` aggregates all workers (counters summed, in-flight summed
over live workers, stored-size gauges from the most recent pass).
"""

from __future__ import annotations

import os
from collections import Counter as Tally
from typing import Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The build-cache clients counted by artifactd_cache_requests_total and
# artifactd_cache_bytes_total: a closed set, so no request can add series. turbo and nx are
# their APIs (/turbo, /nx); the others are /files/ requests told apart by User-Agent, `other`
# being every /files/ client none of them.
CacheKind = Literal["ccache", "bazel", "gradle", "sccache", "turbo", "nx", "other"]
# hit: an entry was found (GET, a hash of a batch query); miss: it was not; write: an entry
# was stored.
CacheResult = Literal["hit", "miss", "write"]
# read: bytes of hits sent; written: bytes of writes received.
CacheDirection = Literal["read", "written"]
CACHE_KINDS: tuple[CacheKind, ...] = get_args(CacheKind)
CACHE_RESULTS: tuple[CacheResult, ...] = get_args(CacheResult)
CACHE_DIRECTIONS: tuple[CacheDirection, ...] = get_args(CacheDirection)

# The User-Agent prefixes of the /files/ clients, as their requests send them (seen in the
# access log): ccache `ccache/4.14`, Bazel `bazel/7.4.1` (`bazel/` from Debian's
# bazel-bootstrap), Gradle `Gradle/4.4.1 (Linux;...)`, sccache's WebDAV storage
# `sccache/0.16.0` (its own, not OpenDAL's default `opendal/...`).
_USER_AGENT_KINDS: tuple[tuple[str, CacheKind], ...] = (
    ("ccache/", "ccache"),
    ("bazel/", "bazel"),
    ("Gradle/", "gradle"),
    ("sccache/", "sccache"),
)
_USER_AGENT_PREFIXES = tuple(prefix for prefix, _ in _USER_AGENT_KINDS)


def files_cache_kind(user_agent: str | None) -> CacheKind:
    """The cache kind of a /files/ request from its User-Agent: a prefix check, `other` for
    any client not listed (or none)."""
    if user_agent is None or not user_agent.startswith(_USER_AGENT_PREFIXES):
        return "other"
    for prefix, kind in _USER_AGENT_KINDS:
        if user_agent.startswith(prefix):
            return kind
    return "other"  # pragma: no cover - the prefixes matched one of them


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """Every metric artifactd exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.traffic = TrafficTally()
        registry = self.registry
        self.requests = Counter(
            "artifactd_http_requests",
            "HTTP requests answered, by method, route and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.response_bytes = Counter(
            "artifactd_http_response_bytes", "Bytes of response bodies sent.", registry=registry
        )
        self.request_bytes = Counter(
            "artifactd_http_request_bytes", "Bytes of request bodies received.", registry=registry
        )
        self.in_flight = Gauge(
            "artifactd_http_requests_in_flight",
            "Requests being handled right now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.checksum_failures = Counter(
            "artifactd_upload_checksum_failures",
            "Uploads refused because their body did not match the digest the client sent.",
            registry=registry,
        )
        self.evictions = Counter(
            "artifactd_evictions",
            "Artifacts evicted, by reason (ttl: expired, size: over --max-size).",
            ["reason"],
            registry=registry,
        )
        for reason in ("ttl", "size"):
            self.evictions.labels(reason)
        self.stored_bytes = Gauge(
            "artifactd_stored_bytes",
            "Total size of live artifacts at the last eviction pass.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.stored_artifacts = Gauge(
            "artifactd_stored_artifacts",
            "Number of live artifacts at the last eviction pass.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.cache_requests = Counter(
            "artifactd_cache_requests",
            "Build-cache lookups and writes, by protocol (kind) and result (hit, miss, write).",
            ["kind", "result"],
            registry=registry,
        )
        self.cache_bytes = Counter(
            "artifactd_cache_bytes",
            "Build-cache bytes, by protocol (kind) and direction (read: hits sent, written:"
            " writes received).",
            ["kind", "direction"],
            registry=registry,
        )
        for kind in CACHE_KINDS:
            for result in CACHE_RESULTS:
                self.cache_requests.labels(kind, result)
            for direction in CACHE_DIRECTIONS:
                self.cache_bytes.labels(kind, direction)
        self.loop_lag = Gauge(
            "artifactd_event_loop_lag_seconds",
            "How late the event loop ran a timer at the last check.",
            registry=registry,
            multiprocess_mode="max",
        )

    def count_cache(
        self, kind: CacheKind, result: CacheResult, amount: int = 1, size: int = 0
    ) -> None:
        """`amount` lookups or writes of one kind; `size` bytes read (hit) or written."""
        if kind not in CACHE_KINDS or result not in CACHE_RESULTS:
            raise ValueError(f"no cache metric for kind {kind!r}, result {result!r}")
        self.cache_requests.labels(kind, result).inc(amount)
        if size:
            self.cache_bytes.labels(kind, "written" if result == "write" else "read").inc(size)

    def flush_traffic(self) -> None:
        """Move the request tally into the Prometheus metrics (which, under --workers, writes
        them to the shared directory the other workers' `/metrics` read)."""
        traffic = self.traffic
        requests, traffic.requests = traffic.requests, Tally()
        for (method, route, status), count in requests.items():
            self.requests.labels(method, route, str(status)).inc(count)
        if traffic.request_bytes:
            self.request_bytes.inc(traffic.request_bytes)
            traffic.request_bytes = 0
        if traffic.response_bytes:
            self.response_bytes.inc(traffic.response_bytes)
            traffic.response_bytes = 0
        self.in_flight.set(traffic.in_flight)
        caches, traffic.caches = traffic.caches, Tally()
        cache_bytes, traffic.cache_bytes = traffic.cache_bytes, Tally()
        for (kind, result), count in caches.items():
            self.count_cache(kind, result, count, cache_bytes[kind, result])

    def exposition(self) -> bytes:
        """The text format: this process's registry, or every worker's in multiprocess mode
        (call `flush_traffic` first, on the event loop that counts the traffic)."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        combined = CollectorRegistry()
        MultiProcessCollector(combined, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(combined)


class TrafficTally:
    """Per-request counts kept as plain integers and folded into the Prometheus metrics by
    `Metrics.flush_traffic` (at every scrape and every second): a labelled Prometheus
    counter takes a lock per increment, which was a tenth of a small download's cost."""

    __slots__ = (
        "cache_bytes",
        "caches",
        "in_flight",
        "request_bytes",
        "requests",
        "response_bytes",
    )

    def __init__(self) -> None:
        self.requests: Tally[tuple[str, str, int]] = Tally()
        self.request_bytes = 0
        self.response_bytes = 0
        self.in_flight = 0
        self.caches: Tally[tuple[CacheKind, CacheResult]] = Tally()
        self.cache_bytes: Tally[tuple[CacheKind, CacheResult]] = Tally()

    def count(
        self, method: str, route: str, status: int, request_bytes: int, response_bytes: int
    ) -> None:
        """One answered request."""
        self.requests[method, route, status] += 1
        self.request_bytes += request_bytes
        self.response_bytes += response_bytes

    def count_files_cache(
        self,
        method: str,
        status: int,
        user_agent: str | None,
        request_bytes: int,
        response_bytes: int,
    ) -> None:
        """One answered /files/ request as a build-cache lookup or write of the kind its
        User-Agent names: GET 200/206/304 a hit (its body read), GET 404 a miss, PUT 2xx a
        write (its body written); anything else is no cache event."""
        if method == "GET":
            if status in (200, 206, 304):
                result: CacheResult = "hit"
                size = response_bytes
            elif status == 404:
                result, size = "miss", 0
            else:
                return
        elif method == "PUT" and 200 <= status < 300:
            result, size = "write", request_bytes
        else:
            return
        key = (files_cache_kind(user_agent), result)
        self.caches[key] += 1
        if size:
            self.cache_bytes[key] += size
