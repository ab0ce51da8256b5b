"""The markers the cap on open uploads per owner counts (`UploadResources.create` with
`open_cap`; `--max-open-uploads`).

An owner is a token's name; every request without a token is one owner, "anonymous". Each
resource gets an empty marker `<owner key>/<id>.<expiry>` when it is created (a file in the
filesystem store's `.artifactd/upload-owners/` folder, an object under the S3 store's
`.artifactd/uploads-owners/` prefix), and loses it when it completes, is removed or expires
(on S3 a node dying in between leaves it counted until that expiry). Counting an
owner's open uploads is one listing of its markers, at most the cap plus one (finished ones
are pruned as they are found): never a scan of every owner's uploads.
"""

from __future__ import annotations

import hashlib
import re

from artifactd.resumable.base import UploadResource

OWNERS_DIR = "upload-owners"
ANONYMOUS = "anonymous"
_MARKER = re.compile(r"(?P<id>[A-Za-z0-9_-]{32})\.(?P<expiry>[0-9]{1,12})")


def owner_key(owner: str | None) -> str:
    """The owner's folder or key prefix: token names are hashed, so any name is a safe file
    name or key, and no two owners share one."""
    return ANONYMOUS if owner is None else hashlib.sha256(owner.encode()).hexdigest()[:32]


def marker_name(resource: UploadResource) -> str:
    # The expiry rounded up: a marker never stops counting before its resource expires.
    return f"{resource.id}.{int(resource.expires_at) + 1}"


def parse_marker(name: str) -> tuple[str, int] | None:
    """A marker's upload id and expiry (Unix seconds), or None for any other name."""
    match = _MARKER.fullmatch(name)
    return None if match is None else (match["id"], int(match["expiry"]))
