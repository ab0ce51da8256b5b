"""Pieces the OpenAPI description repeats: references, JSON bodies, errors, headers and
the parameters every `/files/` operation shares."""

from __future__ import annotations

from typing import Any

JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def error(description: str) -> dict[str, Any]:
    return json(ref("Error"), description)


def header(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
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
    header("If-Match", "RFC 9110 §13.1.1: 412 unless the current ETag is listed."),
    header("If-None-Match", "RFC 9110 §13.1.2."),
    header("If-Modified-Since", "RFC 9110 §13.1.3 (GET/HEAD: 304)."),
    header("If-Unmodified-Since", "RFC 9110 §13.1.4 (412)."),
]
READ_HEADERS = [
    header("Range", "RFC 9110 §14: bytes=a-b, a-, -n; several give multipart/byteranges."),
    header("If-Range", "An ETag or an HTTP-date (only a strong Last-Modified matches)."),
    *CONDITIONALS,
    header("Accept", "text/html or application/json for directory listings."),
    header("Accept-Encoding", "gzip: compressible types may be sent gzip-encoded."),
    header("Want-Digest", "RFC 3230: SHA-256 adds a Digest header."),
    header("Want-Repr-Digest", "RFC 9530."),
]
WRITE_HEADERS = [
    *CONDITIONALS[:2],
    header("X-Artifact-TTL", "Retention: 90s, 15m, 12h, 7d or never (at most 100 years)."),
    header("Repr-Digest", "Expected sha-256 of the body (RFC 9530); mismatch: 400."),
    header("Content-Digest", "Expected sha-256 of the body (RFC 9530); mismatch: 400."),
    header("Digest", "Legacy RFC 3230 SHA-256=<base64>; mismatch: 400."),
    header("X-Checksum-Sha256", "Expected sha-256 of the body, hex; mismatch: 400."),
]
AUTHORIZATION = [header("Authorization", "Bearer <token>, or Basic with the token as password.")]
CLIENT_ERRORS = {
    "400": error("Malformed request (path, header, query value or body)."),
    "401": error("A token is needed (WWW-Authenticate)."),
    "403": error("The token's scope or prefix does not allow this."),
    "429": error("Rate limited (Retry-After)."),
}
UNAVAILABLE = {
    "503": error("The storage backend is unavailable (Retry-After)."),
    "507": error("Insufficient storage."),
}
BODY = {"description": "The artifact's bytes (or a part of them)."}
