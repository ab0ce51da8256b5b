"""The OpenAPI description of resumable uploads at `/uploads/`: tus 1.0.0 (web/tus.py) and
the IETF draft (web/ietf_uploads.py), whose requests carry `Upload-Draft-Interop-Version`
(6 or 8) instead of `Tus-Resumable`. The draft's creation is also a `PUT /files/{path}`
with `Upload-Complete` (its 104 interim response is not something OpenAPI can describe)."""

from __future__ import annotations

from typing import Any

from artifactd.web.openapi.parts import error, header

TUS_RESUMABLE = {
    "name": "Tus-Resumable",
    "in": "header",
    "required": True,
    "description": "The tus version: 1.0.0 (412 otherwise; the IETF draft's requests send "
    "Upload-Draft-Interop-Version instead).",
    "schema": {"type": "string", "const": "1.0.0"},
}
UPLOAD_ID = {"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}}
TUS_ERRORS = {
    "400": error("A malformed header, metadata or checksum."),
    "401": error("No valid token."),
    "403": error("The token may not write there."),
    "404": error("No such upload for this token (or it expired)."),
    "412": error("Tus-Resumable is not 1.0.0."),
}


def uploads_paths() -> dict[str, Any]:
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
                "summary": "tus versions, extensions and limits; the draft's Accept-Patch and "
                "Upload-Limit.",
                "responses": {
                    "204": {
                        "description": "Tus-Version, Tus-Extension, Tus-Max-Size, "
                        "Accept-Patch: application/partial-upload, Upload-Limit"
                    }
                },
            },
            "post": {
                "operationId": "tusCreate",
                "summary": "Create an upload (Upload-Length or Upload-Defer-Length: 1, "
                "Upload-Metadata with `path`); a body is its first piece.",
                "parameters": [
                    TUS_RESUMABLE,
                    header("Upload-Length", "The upload's size in bytes."),
                    header("Upload-Defer-Length", "1: the size comes later."),
                    header("Upload-Metadata", "`key base64value` pairs: path, ttl, ..."),
                ],
                "requestBody": piece,
                "responses": {
                    "201": {"description": "Created: Location names the upload."},
                    **TUS_ERRORS,
                    "413": error("Over --max-upload-size."),
                    "429": error("The token has --max-open-uploads uploads open already."),
                    "507": error("No space left."),
                },
            },
        },
        "/uploads/{upload_id}": {
            "head": {
                "operationId": "tusOffset",
                "summary": "The upload's offset and length.",
                "parameters": [UPLOAD_ID, TUS_RESUMABLE],
                "responses": {
                    "200": {"description": "tus: Upload-Offset"},
                    "204": {"description": "Draft: Upload-Offset, Upload-Complete, Upload-Limit"},
                    **TUS_ERRORS,
                },
            },
            "patch": {
                "operationId": "tusAppend",
                "summary": "Append at Upload-Offset; the last byte commits the artifact.",
                "parameters": [
                    UPLOAD_ID,
                    TUS_RESUMABLE,
                    header("Upload-Offset", "Where the piece starts (409 otherwise)."),
                    header("Upload-Checksum", "sha256 <base64> of the piece (460 otherwise)."),
                ],
                "requestBody": piece,
                "responses": {
                    "204": {"description": "Upload-Offset: the new offset."},
                    "201": {"description": "Draft: Upload-Complete: ?1 committed the artifact."},
                    **TUS_ERRORS,
                    "409": error("The offset is not the upload's, or the commit is refused."),
                    "413": error("Over the upload's length or --max-upload-size."),
                    "415": error("Not application/offset+octet-stream."),
                    "460": error("The piece does not match Upload-Checksum."),
                    "507": error("No space left."),
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
