"""The OpenAPI 3.1 description of artifactd's HTTP interface, served at
`/api/v1/openapi.json`. Kept true by tests/web/test_openapi.py (every route described,
every described route served) and exercised by Schemathesis (tests/process).

Built here rather than generated from the routes: the routes say which methods exist,
not what the headers, parameters and answers mean (SPEC.md, "HTTP interface").
"""

from __future__ import annotations

from typing import Any

from artifactd import __version__
from artifactd.web.openapi.caches import build_cache_paths
from artifactd.web.openapi.files import SCHEMAS, api_get, files_item, redirect
from artifactd.web.openapi.parts import AUTHORIZATION, TAIL, error, header, query, ref
from artifactd.web.openapi.uploads import uploads_paths


def openapi_document() -> dict[str, Any]:
    """The whole HTTP interface as an OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "artifactd",
            "version": __version__,
            "description": "A streaming file-download and artifact server.",
        },
        "paths": {
            "/": redirect("root", "Redirect to /files/."),
            "/files": redirect("filesNoSlash", "Redirect to /files/."),
            "/files/{tail}": files_item(),
            **uploads_paths(),
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness.",
                    "responses": {
                        "200": {"description": "ok", "content": {"text/plain": {}}},
                        "503": error("The storage backend is unavailable (Retry-After)."),
                    },
                },
                "head": {
                    "operationId": "healthzHead",
                    "summary": "Liveness.",
                    "responses": {"200": {"description": "ok"}, "503": {"description": "down"}},
                },
            },
            "/metrics": {
                op: {
                    "operationId": "metrics" + suffix,
                    "summary": "Prometheus text format.",
                    "responses": {"200": {"description": "Metrics", "content": {"text/plain": {}}}},
                }
                for op, suffix in (("get", ""), ("head", "Head"))
            },
            "/api/v1/artifacts": api_get(
                "listArtifacts",
                "A page of artifacts in path order.",
                ref("ArtifactPage"),
                parameters=[
                    query("prefix", "Only paths starting with this.", {"type": "string"}),
                    query("limit", "Page size, 1-1000 (default 100).", {"type": "string"}),
                    query("cursor", "next_cursor of the previous page.", {"type": "string"}),
                    *AUTHORIZATION,
                ],
            ),
            "/api/v1/artifacts/{tail}": api_get(
                "getArtifact",
                "One artifact's metadata.",
                ref("Artifact"),
                parameters=[TAIL, *AUTHORIZATION],
                responses={"404": error("No such artifact.")},
            ),
            "/api/v1/events": api_get(
                "streamEvents",
                "Server-Sent Events: created, replaced, deleted, evicted.",
                {},
                parameters=[
                    header("Last-Event-ID", "Resume after this id."),
                    query("last_event_id", "As Last-Event-ID.", {"type": "string"}),
                    *AUTHORIZATION,
                ],
                responses={
                    "200": {
                        "description": "The stream (heartbeat comments at least every 15 s).",
                        "content": {"text/event-stream": {}},
                    }
                },
            ),
            "/api/v1/stats": api_get(
                "stats", "Counts and sizes.", ref("Stats"), parameters=[*AUTHORIZATION]
            ),
            "/api/v1/openapi.json": api_get("openapi", "This document.", {"type": "object"}),
            **build_cache_paths(),
        },
        "components": {"schemas": SCHEMAS},
    }
