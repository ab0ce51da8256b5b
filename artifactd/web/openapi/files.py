"""The OpenAPI description of `/files/` (downloads, listings, uploads, WebDAV), the
redirects and `/api/v1`."""

from __future__ import annotations

from typing import Any

from artifactd.web.openapi.parts import (
    AUTHORIZATION,
    BODY,
    CLIENT_ERRORS,
    CONDITIONALS,
    DURATION,
    JSON,
    READ_HEADERS,
    TAIL,
    UNAVAILABLE,
    WRITE_HEADERS,
    error,
    json,
    query,
    ref,
)


def files_item() -> dict[str, Any]:
    read_answers = {
        "200": BODY,
        "206": BODY,
        "301": {"description": "A directory without its trailing slash: redirect."},
        "304": {"description": "Not modified."},
        "404": error("No such artifact (or it expired)."),
        "409": error("The path is a directory."),
        "412": error("Precondition failed."),
        "416": error("Range not satisfiable (Content-Range: bytes */size)."),
        **CLIENT_ERRORS,
        **UNAVAILABLE,
    }
    read_parameters = [
        TAIL,
        query(
            "wait", "Hold up to N seconds (0-300) until the artifact exists.", {"type": "string"}
        ),
        query("format", "json: a directory listing as JSON.", {"type": "string"}),
        query(
            "limit",
            "JSON listing: at most N entries (1-1000), with next_cursor to continue.",
            {"type": "string"},
        ),
        query("cursor", "JSON listing: the next_cursor of the page before.", {"type": "string"}),
        query("sort", "Listing order (HTML page).", {"type": "string"}),
        query("order", "Listing direction (HTML page).", {"type": "string"}),
        *READ_HEADERS,
        *AUTHORIZATION,
    ]
    return {
        "get": {
            "operationId": "getFile",
            "summary": "Download an artifact, or list a directory (trailing '/').",
            "parameters": read_parameters,
            "responses": {
                **read_answers,
                "200": {
                    "description": "The bytes, or a listing (HTML, or JSON as below).",
                    "content": {
                        "application/octet-stream": {},
                        JSON: {"schema": {"anyOf": [ref("Listing"), {}]}},
                        "text/html": {},
                    },
                },
            },
        },
        "head": {
            "operationId": "headFile",
            "summary": "The headers GET would give, without the body.",
            "parameters": read_parameters,
            "responses": {
                status: {"description": a["description"]} for status, a in read_answers.items()
            },
        },
        "put": {
            "operationId": "putFile",
            "summary": "Upload (create or replace) an artifact, streamed.",
            "parameters": [
                TAIL,
                query("ttl", "Retention, as X-Artifact-TTL.", DURATION),
                *WRITE_HEADERS,
                *AUTHORIZATION,
            ],
            "requestBody": {
                "required": False,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
            "responses": {
                "200": json(ref("Artifact"), "Replaced."),
                "201": json(ref("Artifact"), "Created."),
                "409": error("Conflict (a directory, or --immutable)."),
                "412": error("Precondition failed."),
                "413": error("Upload too large."),
                **CLIENT_ERRORS,
                **UNAVAILABLE,
            },
        },
        "post": {
            "operationId": "postFiles",
            "summary": "Store each file part of a multipart/form-data body under a directory.",
            "parameters": [TAIL, query("ttl", "Retention.", DURATION), *AUTHORIZATION],
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "file": {"type": "string", "format": "binary"},
                                "ttl": {"type": "string"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {"description": "Stored (JSON, or a redirect for the HTML form)."},
                "201": {"description": "Stored."},
                "303": {"description": "Back to the listing (HTML form)."},
                "405": error("POST to a file URL (Allow lists the methods)."),
                "409": error("Conflict."),
                "413": error("Upload too large."),
                **CLIENT_ERRORS,
                **UNAVAILABLE,
            },
        },
        "options": {
            "operationId": "optionsFile",
            "summary": "WebDAV class 1 and the methods this path takes (DAV, Allow).",
            "parameters": [TAIL, *AUTHORIZATION],
            "responses": {"200": {"description": "DAV: 1 and Allow."}, **CLIENT_ERRORS},
        },
        # OpenAPI 3.1 can describe only the HTTP methods it names: WebDAV's are listed
        # here (RFC 4918; SPEC.md "WebDAV").
        "x-webdav-methods": {
            "PROPFIND": "Depth 0 or 1: 207 Multi-Status; Depth infinity: 403.",
            "MKCOL": "Create a directory: 201; 405 if the path exists; 409 without parent.",
            "COPY": "Copy to Destination (Overwrite honoured), keeping digest and TTL.",
            "MOVE": "Move to Destination (Overwrite honoured), keeping digest and TTL.",
        },
        "delete": {
            "operationId": "deleteFile",
            "summary": "Delete an artifact, or a directory and everything under it (WebDAV).",
            "parameters": [TAIL, *CONDITIONALS[:1], *AUTHORIZATION],
            "responses": {
                "204": {"description": "Deleted."},
                "400": error("A directory's Depth other than infinity."),
                "403": error("The root, or beyond the token's prefix."),
                "404": error("No such artifact or directory."),
                "412": error("Precondition failed."),
                **CLIENT_ERRORS,
                **UNAVAILABLE,
            },
        },
    }


def redirect(operation_id: str, summary: str) -> dict[str, Any]:
    answer = {"301": {"description": "To /files/."}}
    return {
        "get": {"operationId": operation_id, "summary": summary, "responses": answer},
        "head": {"operationId": operation_id + "Head", "summary": summary, "responses": answer},
    }


def api_get(
    operation_id: str, summary: str, schema: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    responses = {"200": json(schema, summary), **CLIENT_ERRORS, **UNAVAILABLE}
    responses.update(extra.pop("responses", {}))
    get = {"operationId": operation_id, "summary": summary, "responses": responses, **extra}
    head = {
        "operationId": operation_id + "Head",
        "summary": summary,
        "responses": {status: {"description": a["description"]} for status, a in responses.items()},
        **extra,
    }
    return {"get": get, "head": head}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "status"],
        "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
    },
    "Artifact": {
        "type": "object",
        "required": ["path", "size", "sha256", "etag", "content_type", "created_at", "expires_at"],
        "properties": {
            "path": {"type": "string"},
            "size": {"type": "integer", "minimum": 0},
            "sha256": {"type": ["string", "null"]},
            "etag": {"type": "string"},
            "content_type": {"type": ["string", "null"]},
            "created_at": {"type": ["string", "null"]},
            "expires_at": {"type": ["string", "null"]},
            "last_accessed": {"type": ["string", "null"]},
        },
    },
    "ArtifactPage": {
        "type": "object",
        "required": ["artifacts", "next_cursor"],
        "properties": {
            "artifacts": {"type": "array", "items": ref("Artifact")},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "Listing": {
        "type": "object",
        "required": ["path", "entries"],
        "properties": {
            "path": {"type": "string"},
            "entries": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "type"],
                    "properties": {
                        "name": {"type": "string"},
                        "type": {"type": "string"},
                        "size": {"type": ["integer", "null"]},
                        "sha256": {"type": ["string", "null"]},
                        "modified": {"type": ["string", "null"]},
                        "expires_at": {"type": ["string", "null"]},
                    },
                },
            },
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "Stats": {
        "type": "object",
        "required": ["artifacts", "bytes", "expired_pending", "evicted_total"],
        "properties": {
            "artifacts": {"type": "integer"},
            "bytes": {"type": "integer"},
            "expired_pending": {"type": "integer"},
            "evicted_total": {"type": "integer"},
            "max_size": {"type": ["integer", "null"]},
        },
    },
}
