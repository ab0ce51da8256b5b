"""The frozen Settings object and OPTIONS, the table of every server and storage option.

Each field is declared once: its default, and in `option()` its kind of value, help and which
commands take it. From that come the click flags (artifactd.cli.options), `Settings.from_env`
(gunicorn), and the keys the config file accepts (artifactd.config). A field `max_size` is the
flag `--max-size`, the variable `ARTIFACTD_MAX_SIZE` and the config key `max_size`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from artifactd.errors import InvalidValueError
from artifactd.options import (
    STORAGE,
    Boolean,
    Choice,
    Directory,
    Duration,
    Integer,
    Networks,
    Option,
    Policies,
    Rate,
    Size,
    Text,
    option,
    options_of,
    values_from_env,
)
from artifactd.policies import SERVER_WIDE, Policy, ServerWide, is_immutable, policy_for, ttl_for

LogFormat = Literal["text", "json"]
LoopName = Literal["uvloop", "asyncio"]
BackendName = Literal["filesystem", "s3"]

_KIB, _MIB, _GIB = 1024, 1024**2, 1024**3


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a server or a store command runs with; checked on construction."""

    root: Path = field(
        default=Path("./storage"), metadata=option(Directory(), "Storage root directory.", STORAGE)
    )
    host: str = field(default="127.0.0.1", metadata=option(Text(), "Address to bind."))
    port: int = field(
        default=8080,
        metadata=option(
            Integer(0, 65535), "Port to bind (0 picks a free one; the readiness line tells which)."
        ),
    )
    workers: int = field(
        default=1,
        metadata=option(
            Integer(1, 256), "Server processes sharing the port (SO_REUSEPORT), supervised."
        ),
    )
    chunk_size: int = field(
        default=64 * _KIB,
        metadata=option(Size(_KIB, 16 * _MIB), "Bytes read and sent per step of a download."),
    )
    sendfile: bool = field(
        default=True,
        metadata=option(
            Boolean(), "Send local files with zero-copy sendfile (else in --chunk-size steps)."
        ),
    )
    max_ranges: int = field(
        default=16,
        metadata=option(
            Integer(1), "More ranges than this in one request get the whole file (200)."
        ),
    )
    default_ttl: float | None = field(
        default=None, metadata=option(Duration(), "Retention of uploads that ask for none.")
    )
    max_size: int | None = field(
        default=None,
        metadata=option(
            Size(optional=True), "Evict least recently accessed artifacts beyond this total size."
        ),
    )
    max_upload_size: int = field(
        default=10 * _GIB, metadata=option(Size(), "Larger uploads are refused with 413.")
    )
    upload_expiry: float = field(
        default=24 * 3600.0,
        metadata=option(
            Duration(allow_never=False, positive=True),
            "Resumable uploads left unfinished this long are removed.",
        ),
    )
    max_open_uploads: int = field(
        default=1000,
        metadata=option(
            Integer(1),
            "Resumable uploads one token (or all anonymous clients together) may have open;"
            " creating more is refused with 429.",
        ),
    )
    evict_interval: float = field(
        default=60.0,
        metadata=option(
            Duration(allow_never=False, positive=True),
            "How often expired and over-size artifacts are evicted.",
        ),
    )
    immutable: bool = field(
        default=False, metadata=option(Boolean(), "Refuse to overwrite an existing artifact (409).")
    )
    keepalive_timeout: float = field(
        default=75.0,
        metadata=option(
            Duration(allow_never=False), "Idle keep-alive connections are closed after this."
        ),
    )
    body_timeout: float = field(
        default=60.0,
        metadata=option(
            Duration(allow_never=False),
            "An upload whose body sends nothing for this long is dropped.",
        ),
    )
    shutdown_timeout: float = field(
        default=30.0,
        metadata=option(
            Duration(allow_never=False),
            "On SIGTERM, how long requests in flight may take to finish.",
        ),
    )
    policies: tuple[Policy, ...] = field(
        default=(),
        metadata=option(
            Policies(),
            "Rules for paths under a prefix, e.g. 'cache/:ttl=7d,max_size=20GiB' (keys ttl, "
            "max_ttl, max_size, immutable; repeatable; ';' or newlines separate several).",
            spelling="policy",
        ),
    )
    log_format: LogFormat = field(
        default="text", metadata=option(Choice("text", "json"), "Access log format.")
    )
    loop: LoopName = field(
        default="uvloop", metadata=option(Choice("uvloop", "asyncio"), "Event loop.")
    )
    private: bool = field(
        default=False,
        metadata=option(
            Boolean(),
            "Downloads and the API need a token with scope read (uploads always need write).",
        ),
    )
    rate_limit: str | None = field(
        default=None,
        metadata=option(
            Rate(optional=True), "Requests per client address, e.g. 600/min (N/s, N/min, N/h)."
        ),
    )
    trusted_proxy: tuple[str, ...] = field(
        default=(),
        metadata=option(
            Networks(),
            "A reverse proxy whose X-Forwarded-For is believed (repeatable; commas or spaces "
            "separate several).",
        ),
    )
    # Storage backend: the root's files, or an S3-compatible bucket (credentials from the
    # standard AWS_* environment) with an optional local disk cache.
    backend: BackendName = field(
        default="filesystem",
        metadata=option(
            Choice("filesystem", "s3"),
            "Where artifacts live: the root's files, or an S3-compatible bucket.",
            STORAGE,
        ),
    )
    s3_endpoint: str | None = field(
        default=None,
        metadata=option(Text(optional=True), "S3 endpoint URL (default: AWS).", STORAGE),
    )
    s3_bucket: str | None = field(
        default=None, metadata=option(Text(optional=True), "Bucket for --backend s3.", STORAGE)
    )
    s3_prefix: str = field(
        default="", metadata=option(Text(), "Key prefix inside the bucket.", STORAGE)
    )
    s3_region: str | None = field(
        default=None, metadata=option(Text(optional=True), "Region (default us-east-1).", STORAGE)
    )
    cache_dir: Path | None = field(
        default=None,
        metadata=option(Directory(optional=True), "Local disk cache in front of S3.", STORAGE),
    )
    cache_max_size: int | None = field(
        default=None, metadata=option(Size(optional=True), "Bound of --cache-dir.", STORAGE)
    )

    def __post_init__(self) -> None:
        # Every field is checked by its kind, so Settings built in code obey the same rules
        # as flags, variables and config keys; then the rules that tie fields together.
        for each in OPTIONS:
            each.check(getattr(self, each.name))
        if self.backend == "s3" and not self.s3_bucket:
            raise InvalidValueError("--backend s3 needs --s3-bucket")
        if self.cache_max_size is not None and self.cache_dir is None:
            raise InvalidValueError("--cache-max-size needs --cache-dir")

    def policy_for(self, path: str) -> Policy | None:
        """The policy of the longest --policy prefix `path` lies under, if any."""
        return policy_for(self.policies, path)

    def ttl_for(
        self, path: str, requested: float | ServerWide | None = SERVER_WIDE
    ) -> float | None:
        """Retention of an upload to `path` that asked for `requested` (seconds, None for
        never; SERVER_WIDE if it asked for nothing), by its policy and --default-ttl."""
        return ttl_for(self.policy_for(path), self.default_ttl, requested)

    def immutable_at(self, path: str) -> bool:
        """Whether an existing `path` may not be overwritten (--immutable or its policy)."""
        return is_immutable(self.policy_for(path), self.immutable)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ARTIFACTD_<FLAG> variables alone (gunicorn's entry point adds the
        config file: artifactd.config.settings_from_environment)."""
        return cls(**values_from_env(OPTIONS, os.environ if environ is None else environ))


OPTIONS: tuple[Option, ...] = options_of(Settings)
OPTIONS_BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}
