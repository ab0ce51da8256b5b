"""The `artifactd` command: parse flags, call one library function, format, pick the exit code.

Exit codes: 0 success, 1 the operation failed (e.g. artifact not found), 2 bad input.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from artifactd import admin
from artifactd.cli.client import CLIENT_COMMANDS
from artifactd.cli.params import DurationParam, F, SizeParam, option
from artifactd.cli.tokens import token_group
from artifactd.config import format_toml, load_config
from artifactd.documents import artifact_document
from artifactd.durations import format_duration, format_size
from artifactd.errors import (
    ArtifactdError,
    InvalidPathError,
    InvalidValueError,
    NotFoundError,
    StoreUnavailableError,
)
from artifactd.evictor import Evictor
from artifactd.settings import Settings
from artifactd.store.base import Store
from artifactd.store.factory import build_store
from artifactd.store.filesystem import MetadataCorruptError
from artifactd.timestamps import isoformat_utc
from artifactd.tokens import TokenFileError


def _apply_config_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """Eager --config: its values become defaults for the flags parsed after it."""
    if value is None:
        return
    known = {p.name for command in main.commands.values() for p in command.params if p.name}
    known.discard("config")
    try:
        values = load_config(value, known)
    except InvalidValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc
    own = {p.name: p for p in ctx.command.params}
    for key, value in list(values.items()):
        target = own.get(key)
        if target is not None and getattr(target, "multiple", False) and isinstance(value, str):
            values[key] = value.split()  # `trusted_proxy = "10.0.0.0/8 ::1"`, as in ARTIFACTD_*
    ctx.default_map = {**(ctx.default_map or {}), **{k: v for k, v in values.items() if k in own}}


_root_option = option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("./storage"),
    show_default=True,
    help="Storage root directory.",
)
_config_option = option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    is_eager=True,
    expose_value=False,
    callback=_apply_config_file,
    help='TOML file with the same keys as the flags (port = 8080, default_ttl = "7d").',
)


STORAGE_KEY = "artifactd.storage"


def _remember_storage(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Storage flags are not passed to the command: they go into the context for
    `storage_settings`, so every store command takes them without listing them."""
    ctx.meta.setdefault(STORAGE_KEY, {})[param.name] = value
    return value


_STORAGE: dict[str, Any] = {"expose_value": False, "callback": _remember_storage}
_STORAGE_OPTIONS = [
    option(
        "--backend",
        type=click.Choice(["filesystem", "s3"]),
        default="filesystem",
        show_default=True,
        help="Where artifacts live: the root's files, or an S3-compatible bucket.",
        **_STORAGE,
    ),
    option("--s3-endpoint", default=None, help="S3 endpoint URL (default: AWS).", **_STORAGE),
    option("--s3-bucket", default=None, help="Bucket for --backend s3.", **_STORAGE),
    option("--s3-prefix", default="", help="Key prefix inside the bucket.", **_STORAGE),
    option("--s3-region", default=None, help="Region (default us-east-1).", **_STORAGE),
    option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Local disk cache in front of S3.",
        **_STORAGE,
    ),
    option(
        "--cache-max-size", type=SizeParam(), default=None, help="Bound of --cache-dir.", **_STORAGE
    ),
]


def storage_settings(root: Path, **flags: Any) -> Settings:
    """Settings for the store the current command's flags describe."""
    storage = click.get_current_context().meta.get(STORAGE_KEY, {})
    try:
        return Settings(root=root, **storage, **flags)
    except InvalidValueError as exc:
        raise click.UsageError(str(exc)) from exc


def root_option(command: F) -> F:
    """--config, --root and the storage backend flags, which every store command takes."""
    for decorate in reversed(_STORAGE_OPTIONS):
        command = decorate(command)
    return _config_option(_root_option(command))


def run_store_command(root: Path, work: Callable[[Store], Any]) -> Any:
    """Open the store, run one coroutine on it, close it; domain errors become exit codes."""
    settings = storage_settings(root)

    async def main() -> Any:
        store = await asyncio.to_thread(build_store, settings)
        await store.start()
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except (InvalidPathError, InvalidValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    except NotFoundError as exc:
        raise click.ClickException(f"not found: {exc}") from exc
    except (ArtifactdError, MetadataCorruptError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="artifactd")
def main() -> None:
    """artifactd: a streaming file-download and artifact server."""


_SERVE_OPTIONS = [
    option("--host", default="127.0.0.1", show_default=True, help="Address to bind."),
    option(
        "--port",
        type=click.IntRange(0, 65535),
        default=8080,
        show_default=True,
        help="Port to bind (0 picks a free one; the readiness line tells which).",
    ),
    option(
        "--workers",
        type=click.IntRange(1, 256),
        default=1,
        show_default=True,
        help="Server processes sharing the port (SO_REUSEPORT), supervised.",
    ),
    option(
        "--chunk-size",
        type=SizeParam(),
        default="64KiB",
        show_default=True,
        help="Bytes read and sent per step of a download.",
    ),
    option(
        "--sendfile/--no-sendfile",
        default=True,
        show_default=True,
        help="Send local files with zero-copy sendfile (else in --chunk-size steps).",
    ),
    option(
        "--max-ranges",
        type=click.IntRange(min=1),
        default=16,
        show_default=True,
        help="More ranges than this in one request get the whole file (200).",
    ),
    option(
        "--default-ttl",
        type=DurationParam(),
        default="never",
        show_default=True,
        help="Retention of uploads that ask for none.",
    ),
    option(
        "--max-size",
        type=SizeParam(),
        default=None,
        help="Evict least recently accessed artifacts beyond this total size.",
    ),
    option(
        "--max-upload-size",
        type=SizeParam(),
        default="10GiB",
        show_default=True,
        help="Larger uploads are refused with 413.",
    ),
    option(
        "--evict-interval",
        type=DurationParam(allow_never=False),
        default="60s",
        show_default=True,
        help="How often expired and over-size artifacts are evicted.",
    ),
    option(
        "--immutable",
        is_flag=True,
        default=False,
        help="Refuse to overwrite an existing artifact (409).",
    ),
    option(
        "--keepalive-timeout",
        type=DurationParam(allow_never=False),
        default="75s",
        show_default=True,
        help="Idle keep-alive connections are closed after this.",
    ),
    option(
        "--body-timeout",
        type=DurationParam(allow_never=False),
        default="60s",
        show_default=True,
        help="An upload whose body sends nothing for this long is dropped.",
    ),
    option(
        "--shutdown-timeout",
        type=DurationParam(allow_never=False),
        default="30s",
        show_default=True,
        help="On SIGTERM, how long requests in flight may take to finish.",
    ),
    option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True),
    option("--loop", type=click.Choice(["uvloop", "asyncio"]), default="uvloop", show_default=True),
    option(
        "--private",
        is_flag=True,
        default=False,
        help="Downloads and the API need a token with scope read (uploads always need write).",
    ),
    option(
        "--rate-limit",
        default=None,
        metavar="N/PERIOD",
        help="Requests per client address, e.g. 600/min (N/s, N/min, N/h); default off.",
    ),
    option(
        "--trusted-proxy",
        multiple=True,
        metavar="CIDR",
        help="A reverse proxy whose X-Forwarded-For is believed (repeatable).",
    ),
]


def serve_options(command: F) -> F:
    """The flags of `serve`, shared with `config` (which prints what they resolve to)."""
    for decorate in reversed(_SERVE_OPTIONS):
        command = decorate(command)
    return command


def build_settings(root: Path, flags: dict[str, Any]) -> Settings:
    return storage_settings(root, **flags)


@main.command()
@root_option
@serve_options
def serve(root: Path, **flags: Any) -> None:
    """Serve the storage root over HTTP until SIGTERM or SIGINT."""
    from artifactd.server import serve as run_server

    settings = build_settings(root, flags)
    try:
        if settings.workers > 1:
            from artifactd.supervisor import run as run_supervised

            run_supervised(settings)
        else:
            run_server(settings)
    except (MetadataCorruptError, TokenFileError, StoreUnavailableError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # e.g. address in use, unreadable root
        raise click.ClickException(f"cannot serve: {exc}") from exc


@main.command(name="config")
@root_option
@serve_options
def config_command(root: Path, **flags: Any) -> None:
    """Print the effective server configuration (file, environment and flags applied)."""
    settings = build_settings(root, flags)
    click.echo(format_toml(settings_document(settings)), nl=False)


def settings_document(settings: Settings) -> dict[str, Any]:
    """Settings as config-file values: durations and sizes in the forms the flags take."""
    document: dict[str, Any] = {}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if field.name in DURATION_FIELDS:
            value = format_duration(value)
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = " ".join(value)
        document[field.name] = value
    return document


DURATION_FIELDS = {
    "default_ttl",
    "evict_interval",
    "keepalive_timeout",
    "body_timeout",
    "shutdown_timeout",
}


main.add_command(token_group(root_option))


@main.command()
@root_option
def init(root: Path) -> None:
    """Create a storage root, or check that an existing one is usable."""
    try:
        real = admin.init_root(root)
    except (OSError, MetadataCorruptError) as exc:
        raise click.ClickException(f"cannot initialise {root}: {exc}") from exc
    click.echo(f"storage root ready: {real}")


@main.command()
@root_option
@click.argument("local_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("artifact_path")
@option("--ttl", type=DurationParam(), default=None, help="Retention, e.g. 7d (default: never).")
def put(root: Path, local_file: Path, artifact_path: str, ttl: float | None) -> None:
    """Import LOCAL_FILE into the store as ARTIFACT_PATH."""
    try:
        path = admin.checked_path(artifact_path)
    except InvalidPathError as exc:
        raise click.BadParameter(str(exc), param_hint="ARTIFACT_PATH") from exc
    size = local_file.stat().st_size
    with click.progressbar(
        length=size,
        label=f"importing {path}",
        file=sys.stderr,
        show_pos=False,
        hidden=not sys.stderr.isatty(),
    ) as bar:
        info, replaced = run_store_command(
            root,
            lambda s: admin.import_file(s, local_file, path, ttl_seconds=ttl, progress=bar.update),
        )
    verb = "replaced" if replaced else "stored"
    click.echo(f"{verb} {info.path} ({format_size(info.size)}, sha256 {info.sha256})")


@main.command(name="ls")
@root_option
@click.argument("prefix", default="")
@click.option("--json", "as_json", is_flag=True, help="One JSON document per artifact, as a list.")
def ls_command(root: Path, prefix: str, as_json: bool) -> None:
    """List artifacts whose path starts with PREFIX."""
    infos = run_store_command(root, lambda s: admin.list_artifacts(s, prefix))
    if as_json:
        click.echo(
            json.dumps([artifact_document(i, with_last_accessed=True) for i in infos], indent=2)
        )
        return
    for info in infos:
        expires = isoformat_utc(info.expires_at) or "never"
        digest = (info.sha256 or "(hashing)")[:12]
        click.echo(f"{format_size(info.size):>10}  {digest:12}  expires {expires:20}  {info.path}")


@main.command()
@root_option
@click.argument("artifact_path")
def rm(root: Path, artifact_path: str) -> None:
    """Delete ARTIFACT_PATH."""
    try:
        path = admin.checked_path(artifact_path)
    except InvalidPathError as exc:
        raise click.BadParameter(str(exc), param_hint="ARTIFACT_PATH") from exc
    info = run_store_command(root, lambda s: s.delete(path))
    click.echo(f"deleted {info.path}")


@main.command()
@root_option
@option(
    "--max-size",
    type=SizeParam(),
    default=None,
    help="Also evict least recently accessed artifacts beyond this total size.",
)
@click.option("--dry-run", is_flag=True, help="Report what would be removed, remove nothing.")
def gc(root: Path, max_size: int | None, dry_run: bool) -> None:
    """Run one eviction pass now: expired artifacts, crashed uploads, --max-size."""
    report = run_store_command(
        root, lambda s: Evictor(s, max_size_bytes=max_size).run_once(dry_run=dry_run)
    )
    if report.skipped:
        raise click.ClickException("another process is evicting right now; try again")
    verb = "would remove" if dry_run else "removed"
    for path in report.expired:
        click.echo(f"{verb} {path} (expired)")
    for path in report.over_size:
        click.echo(f"{verb} {path} (over --max-size)")
    click.echo(
        f"{verb} {len(report.expired)} expired and {len(report.over_size)} over-size "
        f"artifacts ({format_size(report.bytes_freed)}), {report.stale_uploads} stale uploads"
    )


@main.command()
@root_option
def verify(root: Path) -> None:
    """Re-hash every artifact; exit 1 naming each whose bytes no longer match their digest."""
    failures = run_store_command(root, lambda s: admin.verify_store(s, _progress_factory()))
    for result in failures:
        if result.actual_sha256 is None:
            click.echo(f"MISSING  {result.path}", err=True)
        else:
            click.echo(
                f"CORRUPT  {result.path}: expected sha256 {result.expected_sha256}, "
                f"found {result.actual_sha256}",
                err=True,
            )
    if failures:
        raise SystemExit(1)
    click.echo("all artifacts match their digests")


def _progress_factory() -> Callable[[int], admin.Progress]:
    """A progress bar on stderr when it is a terminal, silent otherwise."""

    def make(total: int) -> admin.Progress:
        return click.progressbar(
            length=total, label="verifying", file=sys.stderr, hidden=not sys.stderr.isatty()
        )

    return make


for command in CLIENT_COMMANDS:
    main.add_command(command)


@main.command()
@root_option
def du(root: Path) -> None:
    """Show how many artifacts the store holds and their total size."""
    usage = run_store_command(root, admin.disk_usage)
    click.echo(f"{usage.artifacts} artifacts, {format_size(usage.bytes)} ({usage.bytes} bytes)")
