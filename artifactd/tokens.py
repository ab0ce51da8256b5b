"""Bearer tokens: scopes, optional path prefixes, and their store under the storage root.

Only a SHA-256 of each token is kept, in `<root>/.artifactd/tokens.json` (mode 0600, replaced
atomically). The class is synchronous and thread-safe; the server calls its file I/O from a
worker thread, while `authenticate` touches memory only once loaded and never takes a lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from artifactd.errors import ArtifactdError, ConflictError, InvalidPathError, InvalidValueError
from artifactd.paths import INTERNAL_DIR, is_internal, parse_artifact_path
from artifactd.timestamps import isoformat_utc

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
_RANK = {scope: rank for rank, scope in enumerate(SCOPES)}  # admin ⊃ write ⊃ read

TOKEN_PREFIX = "adt_"  # recognisable in logs and by secret scanners
TOKENS_FILE = "tokens.json"
FILE_VERSION = 1

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


class TokenFileError(ArtifactdError):
    """The tokens file is unreadable, malformed or inconsistent."""


class DuplicateTokenError(ConflictError):
    """A token with that name already exists."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a token may do; never the token itself nor its hash."""

    name: str
    scope: Scope
    prefix: str | None  # a normalised artifact path without trailing '/', or None for all
    created_at: float

    def allows(self, needed: Scope) -> bool:
        return _RANK[self.scope] >= _RANK[needed]

    def covers(self, path: str) -> bool:
        """Whether `path` is the prefix itself or lies under it, segment by segment
        (prefix `myproj` covers `myproj/x` but not `myproj-other/x`)."""
        if self.prefix is None:
            return True
        return path == self.prefix or path.startswith(self.prefix + "/")


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One consistent reading of the file, swapped in whole (so readers need no lock)."""

    by_hash: dict[str, TokenInfo]
    signature: tuple[int, ...] | None  # the file's stat when read; None: no file


def hash_token(token: str) -> str:
    """SHA-256 hex: enough for 256-bit random tokens (no salt or slow hash needed)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidValueError(
            f"invalid token name {name!r} (1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit)"
        )
    return name


def check_scope(scope: str) -> Scope:
    if scope not in SCOPES:
        raise InvalidValueError(f"invalid scope {scope!r} (expected read, write or admin)")
    return scope


def normalise_prefix(prefix: str) -> str:
    """`myproj` for `myproj/`: a safe artifact path, as the URLs are judged."""
    try:
        path = parse_artifact_path(prefix)
    except InvalidPathError as exc:
        raise InvalidValueError(f"invalid prefix {prefix!r}: {exc}") from exc
    if not path:
        raise InvalidValueError("the prefix must name a directory, e.g. myproj/")
    if is_internal(path):
        raise InvalidValueError(f"invalid prefix {prefix!r}: internal state directory")
    return path


class TokenStore:
    """The tokens of one storage root. Nothing is read until first needed."""

    def __init__(self, root: Path) -> None:
        self.state_dir = Path(root) / INTERNAL_DIR
        self.path = self.state_dir / TOKENS_FILE
        self._lock_path = self.state_dir / "tokens.lock"
        self._snapshot: _Snapshot | None = None
        self._io_lock = threading.Lock()  # serialises file I/O; never taken by authenticate

    # -- reading -----------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._snapshot is not None

    def load(self) -> None:
        """Read the file now (missing: no tokens). Raises TokenFileError if corrupt."""
        with self._io_lock:
            self._snapshot = self._read()

    def reload_if_changed(self) -> bool:
        """Re-read the file if its stat changed since the last read; True if it did.

        A corrupt file raises TokenFileError once and the previous tokens stay in force
        until the file changes again.
        """
        with self._io_lock:
            current = self._snapshot
            signature = self._signature()
            if current is not None and signature == current.signature:
                return False
            try:
                self._snapshot = self._read()
            except TokenFileError:
                if current is not None:  # do not re-parse (and re-report) an unchanged file
                    self._snapshot = _Snapshot(current.by_hash, signature)
                raise
            return True

    def has_tokens(self) -> bool:
        return bool(self._ensure_loaded().by_hash)

    def list(self) -> list[TokenInfo]:
        return sorted(self._ensure_loaded().by_hash.values(), key=lambda info: info.name)

    def authenticate(self, token: str) -> TokenInfo | None:
        """The token's info, or None. The presented token is hashed once and looked up by
        its hash (whose timing reveals nothing usable about the token), then confirmed
        with a constant-time comparison."""
        presented = hash_token(token)
        by_hash = self._ensure_loaded().by_hash
        info = by_hash.get(presented)
        stored = presented if info is not None else _DUMMY_HASH
        # Always one compare_digest, found or not, so both paths cost the same.
        if hmac.compare_digest(stored, presented) and info is not None:
            return info
        return None

    # -- changing (used by the CLI; safe across processes) -------------------------------

    def add(self, name: str, scope: str, prefix: str | None = None) -> str:
        """Create a token and return it; only its hash is stored."""
        check_name(name)
        checked_scope = check_scope(scope)
        normalised = None if prefix is None else normalise_prefix(prefix)
        if checked_scope == "admin" and normalised is not None:
            raise InvalidValueError("an admin token cannot be limited to a prefix")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        info = TokenInfo(name, checked_scope, normalised, float(int(time.time())))
        with self._locked_file():
            by_hash = dict(self._read().by_hash)
            if any(existing.name == name for existing in by_hash.values()):
                raise DuplicateTokenError(f"a token named {name!r} already exists")
            by_hash[hash_token(token)] = info
            self._write(by_hash)
            self._snapshot = self._read()
        return token

    def remove(self, name: str) -> bool:
        """Delete the token called `name`; False if there was none."""
        if not self.state_dir.is_dir():
            return False  # nothing to remove, and no reason to create the state directory
        with self._locked_file():
            by_hash = dict(self._read().by_hash)
            kept = {digest: info for digest, info in by_hash.items() if info.name != name}
            if len(kept) == len(by_hash):
                self._snapshot = self._read()
                return False
            self._write(kept)
            self._snapshot = self._read()
        return True

    # -- file format ---------------------------------------------------------------------

    def _ensure_loaded(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is None:
            self.load()
            snapshot = self._snapshot
            assert snapshot is not None
        return snapshot

    def _signature(self) -> tuple[int, ...] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TokenFileError(f"cannot read {self.path}: {exc.strerror}") from exc
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _read(self) -> _Snapshot:
        """Parse the file into a snapshot; the stat is taken on the open file."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                raw = f.read()
        except FileNotFoundError:
            return _Snapshot({}, None)
        except OSError as exc:
            raise TokenFileError(f"cannot read {self.path}: {exc.strerror}") from exc
        signature = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        try:
            return _Snapshot(_parse(raw), signature)
        except (ValueError, TypeError, KeyError) as exc:
            raise TokenFileError(f"{self.path} is corrupt: {exc}") from exc

    def _write(self, by_hash: dict[str, TokenInfo]) -> None:
        """Temp file, fsync, rename, fsync the directory: the file is old or new, never torn."""
        document = {
            "version": FILE_VERSION,
            "tokens": [
                {
                    "name": info.name,
                    "scope": info.scope,
                    "prefix": info.prefix,
                    "created_at": isoformat_utc(info.created_at),
                    "sha256": digest,
                }
                for digest, info in sorted(by_hash.items(), key=lambda item: item[1].name)
            ],
        }
        data = (json.dumps(document, indent=2) + "\n").encode()
        temp = self.state_dir / f".{TOKENS_FILE}.{secrets.token_hex(8)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.fchmod(fd, 0o600)  # whatever the umask
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        dir_fd = os.open(self.state_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @contextlib.contextmanager
    def _locked_file(self) -> Iterator[None]:
        """Exclusive across threads (io lock) and processes (flock), for read-modify-write."""
        with self._io_lock:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock


_DUMMY_HASH = hash_token("no such token")


def _parse(raw: bytes) -> dict[str, TokenInfo]:
    document = json.loads(raw)
    if not isinstance(document, dict) or document.get("version") != FILE_VERSION:
        raise ValueError(f'expected an object with "version": {FILE_VERSION}')
    entries = document["tokens"]
    if not isinstance(entries, list):
        raise ValueError('"tokens" must be a list')
    by_hash: dict[str, TokenInfo] = {}
    names: set[str] = set()
    for entry in entries:
        info, digest = _parse_entry(entry)
        if info.name in names or digest in by_hash:
            raise ValueError(f"token {info.name!r} appears twice")
        names.add(info.name)
        by_hash[digest] = info
    return by_hash


def _parse_entry(entry: Any) -> tuple[TokenInfo, str]:
    if not isinstance(entry, dict):
        raise ValueError("each token must be an object")
    name, scope, prefix = entry["name"], entry["scope"], entry["prefix"]
    digest, created = entry["sha256"], entry["created_at"]
    if not isinstance(name, str) or not isinstance(scope, str):
        raise ValueError("token name and scope must be strings")
    if not isinstance(digest, str) or not _HEX_SHA256.fullmatch(digest):
        raise ValueError(f"token {name!r}: sha256 must be 64 lowercase hex digits")
    if prefix is not None and not isinstance(prefix, str):
        raise ValueError(f"token {name!r}: prefix must be a string or null")
    if not isinstance(created, str):
        raise ValueError(f"token {name!r}: created_at must be an ISO 8601 string")
    info = TokenInfo(
        name=check_name(name),
        scope=check_scope(scope),
        prefix=None if prefix is None else normalise_prefix(prefix),
        created_at=_parse_timestamp(created),
    )
    return info, digest


def _parse_timestamp(text: str) -> float:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
