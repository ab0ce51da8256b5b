"""What every backend's upload shares: the write/commit/abort lifecycle, the digest check,
and writing whole buffers to a temp file descriptor."""

from __future__ import annotations

import abc
import os

from artifactd.errors import DigestMismatchError
from artifactd.store.base import ArtifactInfo, Requirement, Upload


def check_digest(expected_sha256: str | None, sha256: str) -> None:
    """DigestMismatchError unless the received bytes hash to the announced digest."""
    if expected_sha256 is not None and expected_sha256.lower() != sha256:
        raise DigestMismatchError(f"expected sha256 {expected_sha256}, received {sha256}")


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` (os.write may write less than it was given)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class UploadBase(Upload):
    """The lifecycle: writes until `commit` or `abort`, which are both final; a commit that
    fails for any reason (cancellation included) aborts, so nothing is left behind."""

    _done = False

    def _check_writable(self) -> None:
        if self._done:
            raise ValueError("write to a finished upload")

    async def commit(
        self, expected_sha256: str | None = None, *, require: Requirement | None = None
    ) -> tuple[ArtifactInfo, bool]:
        if self._done:
            raise ValueError("commit of a finished upload")
        try:
            result = await self._publish(expected_sha256, require)
        except BaseException:
            await self.abort()
            raise
        self._done = True
        await self._release(committed=True)
        return result

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        await self._release(committed=False)

    @abc.abstractmethod
    async def _publish(
        self, expected_sha256: str | None, require: Requirement | None
    ) -> tuple[ArtifactInfo, bool]:
        """Check the digest, then make the version visible (the contract's `commit`)."""

    @abc.abstractmethod
    async def _release(self, *, committed: bool) -> None:
        """Free what the upload holds; after an abort, also throw the partial version away."""
