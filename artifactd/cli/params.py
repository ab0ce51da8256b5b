"""Click parameter types and the option helper shared by every artifactd command."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from artifactd.durations import check_duration, parse_duration, parse_size

F = TypeVar("F", bound=Callable[..., Any])


class SizeParam(click.ParamType[int, Any]):
    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class DurationParam(click.ParamType[float | None, Any]):
    """A duration in seconds; `never` is None unless `allow_never` is False."""

    name = "duration"

    def __init__(self, allow_never: bool = True) -> None:
        self.allow_never = allow_never

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float | None:
        if value is None:
            return value
        try:  # a number comes from a config file (`default_ttl = 3600`): same limits
            if isinstance(value, float | int):
                return check_duration(value)
            seconds = parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if seconds is None and not self.allow_never:
            self.fail("'never' is not allowed here", param, ctx)
        return seconds


def option(*names: str, **kwargs: Any) -> Callable[[F], F]:
    """A click option that also reads ARTIFACTD_<FLAG> from the environment."""
    flag = next(n for n in names if n.startswith("--")).split("/")[0]
    kwargs.setdefault("envvar", "ARTIFACTD_" + flag[2:].upper().replace("-", "_"))
    kwargs.setdefault("show_envvar", True)
    return click.option(*names, **kwargs)
