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

# The build-cache protocols counted by artifactd_cache_requests_total: a closed set, so no
# request can add series (files, bazel, ccache, gradle, webdav join it when they are counted).
CacheKind = Literal["turbo", "nx"]
# hit: an entry was found (GET, HEAD, a hash of a batch query); miss: it was not; write: an
# entry was stored.
CacheResult = Literal["hit", "miss", "write"]
CACHE_KINDS: tuple[CacheKind, ...] = get_args(CacheKind)
CACHE_RESULTS: tuple[CacheResult, ...] = get_args(CacheResult)


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
        for kind in CACHE_KINDS:
            for result in CACHE_RESULTS:
                self.cache_requests.labels(kind, result)
        self.loop_lag = Gauge(
            "artifactd_event_loop_lag_seconds",
            "How late the event loop ran a timer at the last check.",
            registry=registry,
            multiprocess_mode="max",
        )

    def count_cache(self, kind: CacheKind, result: CacheResult, amount: int = 1) -> None:
        if kind not in CACHE_KINDS or result not in CACHE_RESULTS:
            raise ValueError(f"no cache metric for kind {kind!r}, result {result!r}")
        self.cache_requests.labels(kind, result).inc(amount)

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

    __slots__ = ("in_flight", "request_bytes", "requests", "response_bytes")

    def __init__(self) -> None:
        self.requests: Tally[tuple[str, str, int]] = Tally()
        self.request_bytes = 0
        self.response_bytes = 0
        self.in_flight = 0

    def count(
        self, method: str, route: str, status: int, request_bytes: int, response_bytes: int
    ) -> None:
        """One answered request."""
        self.requests[method, route, status] += 1
        self.request_bytes += request_bytes
        self.response_bytes += response_bytes
