"""Policies per path prefix (`--policy 'cache/:ttl=7d,max_size=20GiB'`): what one prefix
changes about retention and overwrites, and which policy a path falls under.

The longest prefix that a path starts with decides, alone: its keys apply, and a key it
does not give falls back to the server-wide option (`--default-ttl`, `--immutable`), never
to a shorter prefix's policy. How a policy is read from a flag, a variable or a config-file
table is the `Policies` option kind (artifactd.options).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from artifactd.errors import InvalidPathError, InvalidValueError
from artifactd.paths import parse_artifact_path


class ServerWide(enum.Enum):
    """A key the policy does not give: the server-wide option decides."""

    SERVER_WIDE = "server-wide"


SERVER_WIDE = ServerWide.SERVER_WIDE

# The keys a policy takes, in the order `artifactd config` prints them.
POLICY_KEYS = ("ttl", "max_ttl", "max_size", "immutable")


@dataclass(frozen=True, slots=True)
class Policy:
    """One prefix's rules. `ttl`: retention of uploads that ask for none (None: never);
    `max_ttl`: the longest retention an upload gets, a longer one (or never) is clamped
    to it (None: no cap); `max_size`: the bytes the prefix may hold, least recently
    accessed evicted first (None: no budget of its own); `immutable`: overwrites refused."""

    prefix: str
    ttl: float | ServerWide | None = SERVER_WIDE
    max_ttl: float | None = None
    max_size: int | None = None
    immutable: bool | ServerWide = SERVER_WIDE

    def __post_init__(self) -> None:
        check_prefix(self.prefix)
        if (
            isinstance(self.ttl, float | int)
            and self.max_ttl is not None
            and self.ttl > self.max_ttl
        ) or (self.ttl is None and self.max_ttl is not None):
            raise InvalidValueError(f"{self.prefix}: ttl is longer than max_ttl")

    def covers(self, path: str) -> bool:
        return path.startswith(self.prefix)


def check_prefix(prefix: object) -> str:
    """A prefix is a plain artifact path ending in '/' (`cache/`, `ci/bazel/`)."""
    if not isinstance(prefix, str):
        raise InvalidValueError(f"prefix {prefix!r} is not a string")
    if not prefix.endswith("/") or prefix == "/":
        raise InvalidValueError(f"prefix {prefix!r} must be a directory ending in '/'")
    try:
        plain = parse_artifact_path(prefix) == prefix[:-1]
    except InvalidPathError as exc:
        raise InvalidValueError(f"prefix {prefix!r} is not a valid path: {exc}") from None
    if not plain:
        raise InvalidValueError(f"prefix {prefix!r} is not a plain path (no '.', no %-escapes)")
    return prefix


def check_policies(policies: object) -> tuple[Policy, ...]:
    """A tuple of Policy with no prefix given twice."""
    if not isinstance(policies, tuple) or not all(isinstance(p, Policy) for p in policies):
        raise InvalidValueError(f"{policies!r} is not a list of policies")
    seen: set[str] = set()
    for policy in policies:
        if policy.prefix in seen:
            raise InvalidValueError(f"prefix {policy.prefix!r} has two policies")
        seen.add(policy.prefix)
    return policies


def policy_for(policies: Sequence[Policy], path: str) -> Policy | None:
    """The policy of the longest prefix `path` lies under, or None."""
    best: Policy | None = None
    for policy in policies:
        if policy.covers(path) and (best is None or len(policy.prefix) > len(best.prefix)):
            best = policy
    return best


def ttl_for(
    policy: Policy | None, default_ttl: float | None, requested: float | ServerWide | None
) -> float | None:
    """The retention (seconds, None for never) of an upload that asked for `requested`
    (SERVER_WIDE: asked for nothing): the request, else the policy's ttl, else
    `default_ttl`; then clamped to the policy's max_ttl."""
    ttl = requested
    if ttl is SERVER_WIDE and policy is not None:
        ttl = policy.ttl
    if ttl is SERVER_WIDE:
        ttl = default_ttl
    if policy is not None and policy.max_ttl is not None:
        ttl = policy.max_ttl if ttl is None else min(ttl, policy.max_ttl)
    return ttl


def is_immutable(policy: Policy | None, server_immutable: bool) -> bool:
    if policy is None or policy.immutable is SERVER_WIDE:
        return server_immutable
    return policy.immutable
