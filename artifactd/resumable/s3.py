"""Upload resources of the S3 store, in the bucket, so any node sharing it can resume an
upload another node created (docs/storage-s3.md, "Upload resources").

Under the store's `P.artifactd/uploads/`:
  <id>.bin          an S3 multipart upload holding the full parts received (every part but
                    the last must be at least 5 MiB); completed into an object of that key
                    when the last byte is in, and read back by the completion's commit
  <id>.tail-<rand>  the bytes past the last full part (less than a part), one new object per
                    checkpoint, so the state never names a tail being rewritten
  <id>.json         the state: the UploadResource fields, the multipart upload's id, its
                    parts (number, ETag, size) and the tail's key; written with If-Match on
                    the ETag read under the lock, after the parts and the tail it names
  <id>.lock         the append lock: a lease (store/s3/lease.py) renewed while held
A crash between the steps leaves parts or tails the state does not name: never
acknowledged, they are overwritten by the next appender or removed with the resource.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from artifactd.errors import ConflictError, NotFoundError
from artifactd.resumable.base import Appending, UploadResource, UploadResources, is_upload_id
from artifactd.resumable.owners import marker_name, owner_key, parse_marker
from artifactd.store.s3.bucket import Bucket, ClientError, code, is_missing, is_precondition_failed
from artifactd.store.s3.lease import MaintenanceLease
from artifactd.store.s3.upload import next_part_size

# An append lock whose holder stopped renewing it (a node killed mid-PATCH) is taken over
# after this long; the holder renews it every third of it.
APPEND_LOCK_SECONDS = 15.0
# Objects and multipart uploads of an id without a state, older than this, are a crash's
# leftovers (younger ones may belong to a creation in progress).
ORPHAN_AGE_SECONDS = 3600.0


class S3Resources(UploadResources):
    """The upload resources under one bucket prefix's uploads area."""

    def __init__(
        self,
        bucket: Bucket,
        uploads_prefix: str,
        part_size_bytes: int,
        node_id: str,
        lock_seconds: float = APPEND_LOCK_SECONDS,
    ) -> None:
        self.bucket = bucket
        self.prefix = uploads_prefix
        self.part_size_bytes = part_size_bytes
        self.node_id = node_id
        self.lock_seconds = lock_seconds

    def key(self, upload_id: str, suffix: str) -> str:
        return f"{self.prefix}{upload_id}.{suffix}"

    def _owner_prefix(self, owner: str | None) -> str:
        # Beside the uploads area, not in it: its sweep groups keys by upload id.
        return f"{self.prefix.rstrip('/')}-owners/{owner_key(owner)}/"

    def marker_key(self, resource: UploadResource) -> str:
        return self._owner_prefix(resource.owner) + marker_name(resource)

    async def add(self, resource: UploadResource) -> None:
        response = await self.bucket.request(
            "create_multipart_upload", Key=self.key(resource.id, "bin")
        )
        state = _State(resource, response["UploadId"])
        await self.bucket.put_json(self.key(resource.id, "json"), state.to_json(), IfNoneMatch="*")
        await self.bucket.request("put_object", Key=self.marker_key(resource), Body=b"")

    async def open_count(self, owner: str | None) -> int:
        """The owner's markers not yet expired: a completed or removed upload deletes its
        own (a node dying in between leaves one counted until its expiry)."""
        now, count = time.time(), 0
        async for page in self.bucket.list_pages(self._owner_prefix(owner)):
            for item in page.get("Contents", []):
                marker = parse_marker(item["Key"].rpartition("/")[2])
                if marker is not None and marker[1] > now:
                    count += 1
                elif marker is not None:
                    await self.bucket.delete_quietly(item["Key"])
        return count

    async def _state(self, upload_id: str, *, expired: bool = False) -> tuple[_State, str]:
        """The saved state and its ETag; NotFoundError for an unknown id, or an expired one
        unless `expired`."""
        if not is_upload_id(upload_id):
            raise NotFoundError("no such upload")
        found = await self.bucket.get_json(self.key(upload_id, "json"))
        if found is None:
            raise NotFoundError("no such upload")
        try:
            state = _State.from_json(found[0])
        except (ValueError, KeyError, TypeError) as exc:
            raise NotFoundError("no such upload") from exc
        if state.resource.is_expired() and not expired:
            raise NotFoundError("no such upload")
        return state, found[1]

    async def load(self, upload_id: str) -> UploadResource:
        return (await self._state(upload_id))[0].resource

    @contextlib.asynccontextmanager
    async def appending(self, upload_id: str) -> AsyncIterator[Appending]:
        await self._state(upload_id)  # no lock object for an id that names nothing
        lock = MaintenanceLease(
            self.bucket,
            self.key(upload_id, "lock"),
            self.node_id,
            self.lock_seconds,
            name=f"the append lock of upload {upload_id[:8]}…",
        )
        async with lock.hold() as held:
            if not held:
                raise ConflictError("another request is appending to this upload")
            state, etag = await self._state(upload_id)  # as the last holder left it
            tail = b""
            if state.tail_key is not None:
                try:
                    response = await self.bucket.request("get_object", Key=state.tail_key)
                except ClientError as exc:
                    if is_missing(exc):  # removed since the state was read
                        raise NotFoundError("no such upload") from exc
                    raise
                tail = await self.bucket.read_body(response)
            yield S3Appending(self, state, etag, tail)

    async def remove(self, upload_id: str) -> None:
        if not is_upload_id(upload_id):
            return
        with contextlib.suppress(NotFoundError):
            state, _ = await self._state(upload_id, expired=True)
            if not state.assembled:
                await self.abort(self.key(upload_id, "bin"), state.multipart_id)
            await self.bucket.delete_quietly(self.marker_key(state.resource))
        # The lock stays for its holder to release (a completion removes the resource
        # while holding it); a lock left by a dead node goes with the orphans.
        keys = [
            item["Key"]
            async for page in self.bucket.list_pages(f"{self.prefix}{upload_id}.")
            for item in page.get("Contents", [])
            if item["Key"] != self.key(upload_id, "lock")
        ]
        # The state first: once it is gone the resource is, whatever a failure leaves.
        for key in sorted(keys, key=lambda k: not k.endswith(".json")):
            await self.bucket.delete_quietly(key)

    async def abort(self, key: str, multipart_id: str) -> None:
        with contextlib.suppress(ClientError):
            await self.bucket.request("abort_multipart_upload", Key=key, UploadId=multipart_id)

    async def remove_expired(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        cutoff = now - ORPHAN_AGE_SECONDS
        objects: dict[str, list[tuple[str, float]]] = {}
        async for page in self.bucket.list_pages(self.prefix):
            for item in page.get("Contents", []):
                upload_id = item["Key"][len(self.prefix) :].partition(".")[0]
                modified = item["LastModified"].timestamp()
                objects.setdefault(upload_id, []).append((item["Key"], modified))
        removed = 0
        live: set[str] = set()
        for upload_id, keys in objects.items():
            if self.key(upload_id, "json") in {key for key, _ in keys}:
                found = await self.bucket.get_json(self.key(upload_id, "json"))
                expires_at = _expiry(found[0] if found else None)
                if expires_at is not None and expires_at > now:
                    live.add(upload_id)
                    continue
                await self.remove(upload_id)
                removed += 1
            else:
                for key, modified in keys:
                    if modified < cutoff:
                        await self.bucket.delete_quietly(key)
        params: dict[str, Any] = {"Prefix": self.prefix}
        while True:
            page = await self.bucket.request("list_multipart_uploads", **params)
            for upload in page.get("Uploads", []):
                upload_id = upload["Key"][len(self.prefix) :].partition(".")[0]
                if upload_id not in live and upload["Initiated"].timestamp() < cutoff:
                    await self.abort(upload["Key"], upload["UploadId"])
            if not page.get("IsTruncated"):
                return removed
            params["KeyMarker"] = page["NextKeyMarker"]
            params["UploadIdMarker"] = page["NextUploadIdMarker"]


def _expiry(state: Any) -> float | None:
    try:
        return float(state["expires_at"])
    except (TypeError, KeyError, ValueError):
        return None


class _State:
    """What `<id>.json` holds."""

    def __init__(
        self,
        resource: UploadResource,
        multipart_id: str,
        parts: list[dict[str, Any]] | None = None,
        tail_key: str | None = None,
        assembled: bool = False,
    ) -> None:
        self.resource = resource
        self.multipart_id = multipart_id
        self.parts = parts or []  # {"PartNumber", "ETag", "Size"}, in order
        self.tail_key = tail_key
        self.assembled = assembled  # the multipart upload completed into `<id>.bin`

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self.resource),
            "multipart_id": self.multipart_id,
            "parts": self.parts,
            "tail_key": self.tail_key,
            "assembled": self.assembled,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> _State:
        parts = [
            {"PartNumber": int(p["PartNumber"]), "ETag": str(p["ETag"]), "Size": int(p["Size"])}
            for p in value["parts"]
        ]
        tail_key = value["tail_key"]
        return cls(
            UploadResource.from_state(value),
            str(value["multipart_id"]),
            parts,
            None if tail_key is None else str(tail_key),
            bool(value["assembled"]),
        )


class S3Appending(Appending):
    """One holder's appends: full parts go to the multipart upload as they fill, the rest
    stays in memory until a checkpoint writes it as the tail."""

    def __init__(self, resources: S3Resources, state: _State, etag: str, tail: bytes) -> None:
        self._resources = resources
        self._bucket = resources.bucket
        self._state = state
        self._etag = etag
        self.resource = state.resource
        self._parts = list(state.parts)
        self._buffer = bytearray(tail)
        # What the last checkpoint saved, for `rollback`.
        self._saved = (list(state.parts), tail, state.resource.offset)
        if sum(p["Size"] for p in self._parts) + len(tail) != state.resource.offset:
            raise NotFoundError("the upload's saved bytes are inconsistent")

    @property
    def _key(self) -> str:
        return self._resources.key(self.resource.id, "bin")

    async def append(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self._state.assembled:
            raise ConflictError("the upload is complete")
        self._buffer += chunk
        self.resource.offset += len(chunk)
        while len(self._buffer) >= (size := self._next_part_size()):
            await self._upload_part(bytes(self._buffer[:size]))
            del self._buffer[:size]

    def _next_part_size(self) -> int:
        return next_part_size(self._resources.part_size_bytes, len(self._parts))

    async def _upload_part(self, data: bytes) -> None:
        number = len(self._parts) + 1
        try:
            response = await self._bucket.request(
                "upload_part",
                Key=self._key,
                UploadId=self._state.multipart_id,
                PartNumber=number,
                Body=data,
            )
        except ClientError as exc:
            if code(exc) == "NoSuchUpload" or is_missing(exc):
                raise NotFoundError("the upload was removed meanwhile") from exc
            raise
        self._parts.append({"PartNumber": number, "ETag": response["ETag"], "Size": len(data)})

    async def checkpoint(self) -> None:
        old_tail = self._state.tail_key
        tail = bytes(self._buffer)
        if tail != self._saved[1] or self._parts != self._saved[0]:
            new_tail = None
            if tail:
                new_tail = self._resources.key(self.resource.id, f"tail-{secrets.token_hex(8)}")
                await self._bucket.request("put_object", Key=new_tail, Body=tail)
            await self._save(parts=self._parts, tail_key=new_tail)
            if old_tail is not None and old_tail != new_tail:
                await self._bucket.delete_quietly(old_tail)
        else:
            await self._save()  # other fields (a deferred length) may have changed
        self._saved = (list(self._parts), tail, self.resource.offset)

    async def _save(self, **changes: Any) -> None:
        """Write the state with If-Match on the one read under the lock: a resource removed
        (or taken over after this node lost its lock) meanwhile is not brought back."""
        state = _State(
            self.resource,
            self._state.multipart_id,
            changes.get("parts", self._state.parts),
            changes.get("tail_key", self._state.tail_key),
            changes.get("assembled", self._state.assembled),
        )
        try:
            self._etag = await self._bucket.put_json(
                self._resources.key(self.resource.id, "json"), state.to_json(), IfMatch=self._etag
            )
        except ClientError as exc:
            if is_precondition_failed(exc) or is_missing(exc):
                raise NotFoundError("the upload was removed meanwhile") from exc
            raise
        self._state = state

    async def rollback(self) -> None:
        parts, tail, offset = self._saved
        self._parts = list(parts)
        self._buffer = bytearray(tail)
        self.resource.offset = offset

    async def chunks(self) -> AsyncIterator[bytes]:
        if not self._state.assembled:
            await self._assemble()
        try:
            response = await self._bucket.request("get_object", Key=self._key)
        except ClientError as exc:
            if is_missing(exc):
                raise NotFoundError("the upload's bytes are gone") from exc
            raise
        async for chunk in self._bucket.iter_body(response):
            yield chunk

    async def mark_complete(self) -> None:
        self.resource.complete = True
        old_tail = self._state.tail_key
        # The state first: a crash after it leaves bytes that `remove` (at expiry) finds.
        await self._save(tail_key=None)
        await self._bucket.delete_quietly(self._resources.marker_key(self.resource))
        if self._state.assembled:
            await self._bucket.delete_quietly(self._key)
        else:
            await self._resources.abort(self._key, self._state.multipart_id)
        if old_tail is not None:
            await self._bucket.delete_quietly(old_tail)

    async def _assemble(self) -> None:
        """Complete the multipart upload into `<id>.bin`, the saved tail as its last part
        (S3 needs one part at least: an empty upload gets an empty one)."""
        parts, tail, offset = self._saved
        old_tail = self._state.tail_key
        try:
            if tail or not parts:
                self._parts = list(parts)
                await self._upload_part(tail)
                parts = self._parts
            await self._bucket.request(
                "complete_multipart_upload",
                Key=self._key,
                UploadId=self._state.multipart_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]
                },
            )
        except (ClientError, NotFoundError) as exc:
            if isinstance(exc, ClientError) and code(exc) != "NoSuchUpload" and not is_missing(exc):
                raise
            # Completed before, by a holder that died before saving so: the object tells.
            if await self._assembled_size() != offset:
                raise NotFoundError("the upload's bytes are gone") from exc
        await self._save(parts=parts, tail_key=None, assembled=True)
        if old_tail is not None:
            await self._bucket.delete_quietly(old_tail)

    async def _assembled_size(self) -> int | None:
        try:
            head = await self._bucket.request("head_object", Key=self._key)
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        size: int = head["ContentLength"]
        return size
