"""The OpenAPI 3.1 description of artifactd's HTTP interface, served at
`/api/v1/openapi.json`. Kept true by tests/web/test_openapi.py (every route described,
every described route served) and exercised by Schemathesis (tests/process).

Built here rather than generated from the routes: the routes say which methods exist,
not what the headers, parameters and answers mean (SPEC.md, "HTTP interface").
"""

from __future__ import annotations

from typing import Any

from artifactd import __version__

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _header(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


TAIL = {
    "name": "tail",
    "in": "path",
    "required": True,
    "description": "The artifact path (segments separated by '/'; a trailing '/' names a "
    "directory). `.` segments are dropped; `..`, NUL and internal names are refused.",
    "schema": {"type": "string"},
}
DURATION = {"type": "string", "pattern": "^([0-9]+[smhd]|never)$"}
CONDITIONALS = [
    _header("If-Match", "RFC 9110 §13.1.1: 412 unless the current ETag is listed."),
    _header("If-None-Match", "RFC 9110 §13.1.2."),
    _header("If-Modified-Since", "RFC 9110 §13.1.3 (GET/HEAD: 304)."),
    _header("If-Unmodified-Since", "RFC 9110 §13.1.4 (412)."),
]
READ_HEADERS = [
    _header("Range", "RFC 9110 §14: bytes=a-b, a-, -n; several give multipart/byteranges."),
    _header("If-Range", "An ETag or an HTTP-date (only a strong Last-Modified matches)."),
    *CONDITIONALS,
    _header("Accept", "text/html or application/json for directory listings."),
    _header("Accept-Encoding", "gzip: compressible types may be sent gzip-encoded."),
    _header("Want-Digest", "RFC 3230: SHA-256 adds a Digest header."),
    _header("Want-Repr-Digest", "RFC 9530."),
]
WRITE_HEADERS = [
    *CONDITIONALS[:2],
    _header("X-Artifact-TTL", "Retention: 90s, 15m, 12h, 7d or never (at most 100 years)."),
    _header("Repr-Digest", "Expected sha-256 of the body (RFC 9530); mismatch: 400."),
    _header("Content-Digest", "Expected sha-256 of the body (RFC 9530); mismatch: 400."),
    _header("Digest", "Legacy RFC 3230 SHA-256=<base64>; mismatch: 400."),
    _header("X-Checksum-Sha256", "Expected sha-256 of the body, hex; mismatch: 400."),
]
AUTHORIZATION = [_header("Authorization", "Bearer <token>, or Basic with the token as password.")]
CLIENT_ERRORS = {
    "400": _error("Malformed request (path, header, query value or body)."),
    "401": _error("A token is needed (WWW-Authenticate)."),
    "403": _error("The token's scope or prefix does not allow this."),
    "429": _error("Rate limited (Retry-After)."),
}
UNAVAILABLE = {
    "503": _error("The storage backend is unavailable (Retry-After)."),
    "507": _error("Insufficient storage."),
}
BODY = {"description": "The artifact's bytes (or a part of them)."}


def _files_item() -> dict[str, Any]:
    read_answers = {
        "200": BODY,
        "206": BODY,
        "301": {"description": "A directory without its trailing slash: redirect."},
        "304": {"description": "Not modified."},
        "404": _error("No such artifact (or it expired)."),
        "409": _error("The path is a directory."),
        "412": _error("Precondition failed."),
        "416": _error("Range not satisfiable (Content-Range: bytes */size)."),
        **CLIENT_ERRORS,
        **UNAVAILABLE,
    }
    read_parameters = [
        TAIL,
        _query(
            "wait", "Hold up to N seconds (0-300) until the artifact exists.", {"type": "string"}
        ),
        _query("format", "json: a directory listing as JSON.", {"type": "string"}),
        _query("sort", "Listing order (HTML page).", {"type": "string"}),
        _query("order", "Listing direction (HTML page).", {"type": "string"}),
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
                        JSON: {"schema": {"anyOf": [_ref("Listing"), {}]}},
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
                _query("ttl", "Retention, as X-Artifact-TTL.", DURATION),
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
                "200": _json(_ref("Artifact"), "Replaced."),
                "201": _json(_ref("Artifact"), "Created."),
                "409": _error("Conflict (a directory, or --immutable)."),
                "412": _error("Precondition failed."),
                "413": _error("Upload too large."),
                **CLIENT_ERRORS,
                **UNAVAILABLE,
            },
        },
        "post": {
            "operationId": "postFiles",
            "summary": "Store each file part of a multipart/form-data body under a directory.",
            "parameters": [TAIL, _query("ttl", "Retention.", DURATION), *AUTHORIZATION],
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
                "405": _error("POST to a file URL (Allow lists the methods)."),
                "409": _error("Conflict."),
                "413": _error("Upload too large."),
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
            "summary": "Delete an artifact.",
            "parameters": [TAIL, *CONDITIONALS[:1], *AUTHORIZATION],
            "responses": {
                "204": {"description": "Deleted."},
                "404": _error("No such artifact."),
                "409": _error("The path is a directory."),
                "412": _error("Precondition failed."),
                **CLIENT_ERRORS,
                **UNAVAILABLE,
            },
        },
    }


def _redirect(operation_id: str, summary: str) -> dict[str, Any]:
    answer = {"301": {"description": "To /files/."}}
    return {
        "get": {"operationId": operation_id, "summary": summary, "responses": answer},
        "head": {"operationId": operation_id + "Head", "summary": summary, "responses": answer},
    }


def _api_get(
    operation_id: str, summary: str, schema: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    responses = {"200": _json(schema, summary), **CLIENT_ERRORS, **UNAVAILABLE}
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
            "artifacts": {"type": "array", "items": _ref("Artifact")},
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


HASH = {"name": "hash", "in": "path", "required": True, "schema": {"type": "string"}}
TEAM = [
    _query("teamId", "The team (an id starting with team_).", {"type": "string"}),
    _query("slug", "The team, by slug.", {"type": "string"}),
]
ARCHIVE = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _build_cache_paths() -> dict[str, Any]:
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
                    _header("x-artifact-duration", "The task's milliseconds."),
                    _header("x-artifact-tag", "The signature tag."),
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


TUS_RESUMABLE = {
    "name": "Tus-Resumable",
    "in": "header",
    "required": True,
    "description": "The tus version: 1.0.0 (412 otherwise).",
    "schema": {"type": "string", "const": "1.0.0"},
}
UPLOAD_ID = {"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}}
TUS_ERRORS = {
    "400": _error("A malformed header, metadata or checksum."),
    "401": _error("No valid token."),
    "403": _error("The token may not write there."),
    "404": _error("No such upload for this token (or it expired)."),
    "412": _error("Tus-Resumable is not 1.0.0."),
    "501": _error("This storage backend keeps no upload resources."),
}


def _uploads_paths() -> dict[str, Any]:
    """tus 1.0.0 (web/tus.py)."""
    piece = {
        "required": False,
        "content": {
            "application/offset+octet-stream": {"schema": {"type": "string", "format": "binary"}}
        },
    }
    return {
        "/uploads/": {
            "options": {
                "operationId": "tusOptions",
                "summary": "tus versions, extensions and limits.",
                "responses": {"204": {"description": "Tus-Version, Tus-Extension, Tus-Max-Size"}},
            },
            "post": {
                "operationId": "tusCreate",
                "summary": "Create an upload (Upload-Length or Upload-Defer-Length: 1, "
                "Upload-Metadata with `path`); a body is its first piece.",
                "parameters": [
                    TUS_RESUMABLE,
                    _header("Upload-Length", "The upload's size in bytes."),
                    _header("Upload-Defer-Length", "1: the size comes later."),
                    _header("Upload-Metadata", "`key base64value` pairs: path, ttl, ..."),
                ],
                "requestBody": piece,
                "responses": {
                    "201": {"description": "Created: Location names the upload."},
                    **TUS_ERRORS,
                    "413": _error("Over --max-upload-size."),
                    "507": _error("No space left."),
                },
            },
        },
        "/uploads/{upload_id}": {
            "head": {
                "operationId": "tusOffset",
                "summary": "The upload's offset and length.",
                "parameters": [UPLOAD_ID, TUS_RESUMABLE],
                "responses": {"200": {"description": "Upload-Offset"}, **TUS_ERRORS},
            },
            "patch": {
                "operationId": "tusAppend",
                "summary": "Append at Upload-Offset; the last byte commits the artifact.",
                "parameters": [
                    UPLOAD_ID,
                    TUS_RESUMABLE,
                    _header("Upload-Offset", "Where the piece starts (409 otherwise)."),
                    _header("Upload-Checksum", "sha256 <base64> of the piece (460 otherwise)."),
                ],
                "requestBody": piece,
                "responses": {
                    "204": {"description": "Upload-Offset: the new offset."},
                    **TUS_ERRORS,
                    "409": _error("The offset is not the upload's, or the commit is refused."),
                    "413": _error("Over the upload's length or --max-upload-size."),
                    "415": _error("Not application/offset+octet-stream."),
                    "460": _error("The piece does not match Upload-Checksum."),
                    "507": _error("No space left."),
                },
            },
            "delete": {
                "operationId": "tusTerminate",
                "summary": "Cancel the upload.",
                "parameters": [UPLOAD_ID, TUS_RESUMABLE],
                "responses": {"204": {"description": "Removed."}, **TUS_ERRORS},
            },
        },
    }


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
            "/": _redirect("root", "Redirect to /files/."),
            "/files": _redirect("filesNoSlash", "Redirect to /files/."),
            "/files/{tail}": _files_item(),
            **_uploads_paths(),
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness.",
                    "responses": {
                        "200": {"description": "ok", "content": {"text/plain": {}}},
                        "503": _error("The storage backend is unavailable (Retry-After)."),
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
            "/api/v1/artifacts": _api_get(
                "listArtifacts",
                "A page of artifacts in path order.",
                _ref("ArtifactPage"),
                parameters=[
                    _query("prefix", "Only paths starting with this.", {"type": "string"}),
                    _query("limit", "Page size, 1-1000 (default 100).", {"type": "string"}),
                    _query("cursor", "next_cursor of the previous page.", {"type": "string"}),
                    *AUTHORIZATION,
                ],
            ),
            "/api/v1/artifacts/{tail}": _api_get(
                "getArtifact",
                "One artifact's metadata.",
                _ref("Artifact"),
                parameters=[TAIL, *AUTHORIZATION],
                responses={"404": _error("No such artifact.")},
            ),
            "/api/v1/events": _api_get(
                "streamEvents",
                "Server-Sent Events: created, replaced, deleted, evicted.",
                {},
                parameters=[
                    _header("Last-Event-ID", "Resume after this id."),
                    _query("last_event_id", "As Last-Event-ID.", {"type": "string"}),
                    *AUTHORIZATION,
                ],
                responses={
                    "200": {
                        "description": "The stream (heartbeat comments at least every 15 s).",
                        "content": {"text/event-stream": {}},
                    }
                },
            ),
            "/api/v1/stats": _api_get(
                "stats", "Counts and sizes.", _ref("Stats"), parameters=[*AUTHORIZATION]
            ),
            "/api/v1/openapi.json": _api_get("openapi", "This document.", {"type": "object"}),
            **_build_cache_paths(),
        },
        "components": {"schemas": SCHEMAS},
    }
