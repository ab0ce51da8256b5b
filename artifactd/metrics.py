"""Prometheus metrics (prometheus-client), one registry per application.

Under `--workers N` the supervisor sets PROMETHEUS_MULTIPROC_DIR, every worker writes its
samples there, and `/metrics` aggregates all workers (counters summed, in-flight summed
over live workers, stored-size gauges from the most recent pass).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """Every metric artifactd exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._request_children: dict[tuple[str, str, int], Any] = {}
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
        self.loop_lag = Gauge(
            "artifactd_event_loop_lag_seconds",
            "How late the event loop ran a timer at the last check.",
            registry=registry,
            multiprocess_mode="max",
        )

    def count_request(self, method: str, route: str, status: int) -> None:
        """requests_total{method,route,status} += 1, with the labelled child looked up once."""
        key = (method, route, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(method, route, str(status))
        child.inc()

    def exposition(self) -> bytes:
        """The text format: this process's registry, or every worker's in multiprocess mode."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        combined = CollectorRegistry()
        MultiProcessCollector(combined, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(combined)
