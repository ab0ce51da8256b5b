"""The OpenAPI description of the build caches' APIs: Turborepo at `/turbo`, Nx at `/nx`."""

from __future__ import annotations

from typing import Any

from artifactd.web.openapi.parts import AUTHORIZATION, JSON, header, query

HASH = {"name": "hash", "in": "path", "required": True, "schema": {"type": "string"}}
TEAM = [
    query("teamId", "The team (an id starting with team_).", {"type": "string"}),
    query("slug", "The team, by slug.", {"type": "string"}),
]
ARCHIVE = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def build_cache_paths() -> dict[str, Any]:
    """Turborepo's remote cache API at /turbo and Nx's at /nx (SPEC.md "Build caches"):
    their errors keep the shapes those clients parse, so no schema is checked here."""
    turbo_entry = [HASH, *TEAM, *AUTHORIZATION]
    hit = {"200": {"description": "The entry.", "content": ARCHIVE}}
    miss = {"404": {"description": "No such entry."}, "400": {"description": "Bad hash."}}
    refused = {"401": {"description": "A token is needed."}, "403": {"description": "Refused."}}
    read = {**hit, **miss, **refused}
    return {
        "/turbo/v8/artifacts/status": {
            op: {
                "operationId": "turboStatus" + suffix,
                "summary": 'Caching status: {"status": "enabled"}.',
                "parameters": [*TEAM, *AUTHORIZATION],
                "responses": {"200": {"description": "Enabled."}, **refused},
            }
            for op, suffix in (("get", ""), ("head", "Head"))
        },
        "/turbo/v8/artifacts/events": {
            "post": {
                "operationId": "turboEvents",
                "summary": "Cache usage events: accepted and counted.",
                "parameters": [*TEAM, *AUTHORIZATION],
                "requestBody": {"content": {JSON: {"schema": {}}}},
                "responses": {"200": {"description": "Accepted."}, "400": {"description": "Bad."}},
            }
        },
        "/turbo/v8/artifacts": {
            "post": {
                "operationId": "turboQuery",
                "summary": "Which hashes exist: a JSON object keyed by hash.",
                "parameters": [*TEAM, *AUTHORIZATION],
                "requestBody": {
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "hashes": {"type": "array", "items": {"type": "string"}}
                                },
                            }
                        }
                    }
                },
                "responses": {
                    "200": {"description": "Sizes, durations and tags."},
                    "400": {"description": "Bad."},
                    **refused,
                },
            }
        },
        "/turbo/v8/artifacts/{hash}": {
            "get": {
                "operationId": "turboGet",
                "summary": "A cache entry.",
                "parameters": turbo_entry,
                "responses": read,
            },
            "head": {
                "operationId": "turboHead",
                "summary": "A cache entry's headers.",
                "parameters": turbo_entry,
                "responses": read,
            },
            "put": {
                "operationId": "turboPut",
                "summary": "Store a cache entry (x-artifact-duration, x-artifact-tag kept).",
                "parameters": [
                    *turbo_entry,
                    header("x-artifact-duration", "The task's milliseconds."),
                    header("x-artifact-tag", "The signature tag."),
                ],
                "requestBody": {"content": ARCHIVE},
                "responses": {
                    "202": {"description": "Stored."},
                    "200": {"description": "Stored."},
                    "400": {"description": "Bad."},
                    "413": {"description": "Too large."},
                    **refused,
                },
            },
        },
        "/nx/v1/cache/{hash}": {
            "get": {
                "operationId": "nxGet",
                "summary": "A cache entry.",
                "parameters": [HASH, *AUTHORIZATION],
                "responses": read,
            },
            "head": {
                "operationId": "nxHead",
                "summary": "A cache entry's headers.",
                "parameters": [HASH, *AUTHORIZATION],
                "responses": read,
            },
            "put": {
                "operationId": "nxPut",
                "summary": "Store a cache entry once (write-once).",
                "parameters": [HASH, *AUTHORIZATION],
                "requestBody": {"content": ARCHIVE},
                "responses": {
                    "202": {"description": "Stored."},
                    "409": {"description": "Exists."},
                    "400": {"description": "Bad."},
                    "411": {"description": "Length required."},
                    "413": {"description": "Too large."},
                    **refused,
                },
            },
        },
    }
