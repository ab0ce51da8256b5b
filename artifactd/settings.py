"""One frozen Settings object, built once from CLI flags or ARTIFACTD_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from artifactd.durations import parse_duration, parse_rate, parse_size
from artifactd.errors import InvalidValueError
from artifactd.ratelimit import parse_networks

LogFormat = Literal["text", "json"]
LoopName = Literal["uvloop", "asyncio"]
BackendName = Literal["filesystem", "s3"]


@dataclass(frozen=True, slots=True)
class Settings:
    root: Path = Path("./storage")
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    chunk_size: int = 64 * 1024
    sendfile: bool = True  # zero-copy for local files; False streams every body in chunks
    max_ranges: int = 16
    default_ttl: float | None = None  # seconds; None = never expire
    max_size: int | None = None  # bytes for all artifacts; None = unbounded
    max_upload_size: int = 10 * 1024**3
    evict_interval: float = 60.0
    immutable: bool = False
    keepalive_timeout: float = 75.0
    body_timeout: float = 60.0
    shutdown_timeout: float = 30.0
    log_format: LogFormat = "text"
    loop: LoopName = "uvloop"
    private: bool = False  # reads need a `read` token too
    rate_limit: str | None = None  # "600/min" per client address; None = off
    trusted_proxy: tuple[str, ...] = ()
    # Storage backend: the root's files, or an S3-compatible bucket (credentials from the
    # standard AWS_* environment) with an optional local disk cache.
    backend: BackendName = "filesystem"
    s3_endpoint: str | None = None
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_region: str | None = None
    cache_dir: Path | None = None
    cache_max_size: int | None = None  # CIDRs whose X-Forwarded-For is believed

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InvalidValueError(f"port {self.port} is out of range 0-65535")
        if not 1 <= self.workers <= 256:
            raise InvalidValueError("workers must be between 1 and 256")
        if self.chunk_size < 1024 or self.chunk_size > 16 * 1024 * 1024:
            raise InvalidValueError("chunk size must be between 1 KiB and 16 MiB")
        if self.max_ranges < 1:
            raise InvalidValueError("max ranges must be at least 1")
        if min(self.keepalive_timeout, self.shutdown_timeout, self.body_timeout) < 0:
            raise InvalidValueError("timeouts must not be negative")
        if self.evict_interval <= 0:
            raise InvalidValueError("evict interval must be positive")
        if self.max_upload_size < 0 or (self.max_size is not None and self.max_size < 0):
            raise InvalidValueError("sizes must not be negative")
        if self.log_format not in ("text", "json"):
            raise InvalidValueError(f"unknown log format {self.log_format!r}")
        if self.loop not in ("uvloop", "asyncio"):
            raise InvalidValueError(f"unknown event loop {self.loop!r}")
        if self.backend not in ("filesystem", "s3"):
            raise InvalidValueError(f"unknown backend {self.backend!r}")
        if self.backend == "s3" and not self.s3_bucket:
            raise InvalidValueError("--backend s3 needs --s3-bucket")
        if self.cache_max_size is not None and self.cache_dir is None:
            raise InvalidValueError("--cache-max-size needs --cache-dir")
        if self.rate_limit is not None:
            parse_rate(self.rate_limit)
        parse_networks(self.trusted_proxy)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ARTIFACTD_<FLAG> variables (for gunicorn, which passes no flags)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = environ.get(f"ARTIFACTD_{field.name.upper()}")
            if raw is not None:
                values[field.name] = _convert(field.name, raw)
        return cls(**values)


_INTEGERS = {"port", "max_ranges", "workers"}
_SIZES = {"chunk_size", "max_upload_size"}
_OPTIONAL_SIZES = {"max_size", "cache_max_size"}
_DURATIONS = {"keepalive_timeout", "body_timeout", "shutdown_timeout", "evict_interval"}
_OPTIONAL_DURATIONS = {"default_ttl"}
_BOOLEANS = {"immutable", "sendfile", "private"}


def _convert(name: str, raw: str) -> Any:
    """Parse one environment value with the same rules as the matching CLI flag."""
    try:
        if name in ("root", "cache_dir"):
            return Path(raw)
        if name in _INTEGERS:
            return int(raw)
        if name in _SIZES:
            return parse_size(raw)
        if name in _OPTIONAL_SIZES:
            return None if raw.lower() in ("", "none", "unlimited") else parse_size(raw)
        if name in _DURATIONS | _OPTIONAL_DURATIONS:
            seconds = parse_duration(raw)
            if seconds is None and name in _DURATIONS:
                raise InvalidValueError("'never' is not allowed here")
            return seconds
        if name in _BOOLEANS:
            return parse_bool(raw)
        if name == "rate_limit":
            return None if raw.strip().lower() in ("", "off", "none") else raw
        if name == "trusted_proxy":
            return tuple(raw.replace(",", " ").split())
    except ValueError as exc:
        raise InvalidValueError(f"ARTIFACTD_{name.upper()}: {exc}") from exc
    return raw


def parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise InvalidValueError(f"{raw!r} is not a boolean")
