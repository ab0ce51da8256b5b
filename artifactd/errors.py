"""Domain exceptions raised by artifactd's core; they carry no HTTP status codes.

The web layer maps each class to a status; the CLI maps them to messages and exit codes.
"""

from __future__ import annotations


class ArtifactdError(Exception):
    """Base class of every error artifactd raises on purpose."""


class InvalidPathError(ArtifactdError):
    """An unsafe or malformed artifact path."""


class NotFoundError(ArtifactdError):
    """No artifact (or directory) at that path."""


class IsDirectoryError(ArtifactdError):
    """The path names a directory where a file was expected."""


class NotDirectoryError(ArtifactdError):
    """The path names a file where a directory was expected."""


class ConflictError(ArtifactdError):
    """The request conflicts with what is stored (e.g. overwriting with --immutable)."""


class PreconditionFailedError(ArtifactdError):
    """A conditional request's precondition evaluated to false (RFC 9110 §13)."""


class DigestMismatchError(ArtifactdError):
    """The received bytes do not hash to the digest the client announced."""


class InvalidDigestError(ArtifactdError):
    """A malformed (or self-contradicting) expected-digest header."""


class InvalidValueError(ArtifactdError, ValueError):
    """A bad duration, size, rate or similar configuration value."""


class AddressInUseError(ArtifactdError):
    """The address to serve on is bound already (another server, whatever its workers)."""


class StorageFullError(ArtifactdError):
    """The store cannot take more bytes."""


class TooManyUploadsError(ArtifactdError):
    """The client has as many resumable uploads open as it may (--max-open-uploads)."""


class UploadTooLargeError(ArtifactdError):
    """The upload exceeds the configured maximum upload size."""


class IncompleteUploadError(ArtifactdError):
    """The upload body ended before it was complete."""


class StoreUnavailableError(ArtifactdError):
    """The storage backend (an object store) cannot be reached or is failing; the same
    request may succeed later."""


class ArtifactReplacedError(StoreUnavailableError):
    """The version a reader was pinned to left the store (replaced or deleted mid-read)
    and no local copy of it is left; a new request gets the new version."""
