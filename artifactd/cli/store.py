"""The commands that work on a store directly: init, put, ls, rm, gc, verify, du."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from artifactd import admin
from artifactd.cli.exitcodes import FAILED, Command
from artifactd.cli.options import (
    DURATION,
    CheckedParam,
    command_settings,
    env_option,
    require_existing_root,
    settings_option,
    store_options,
)
from artifactd.documents import artifact_document
from artifactd.durations import format_size
from artifactd.evictor import EvictionReason, Evictor
from artifactd.policies import Policy
from artifactd.store.base import ArtifactInfo, Store
from artifactd.store.factory import build_store
from artifactd.timestamps import isoformat_utc

# An artifact path typed by a person, checked as the URLs are.
ARTIFACT_PATH = CheckedParam("artifact_path", admin.checked_path)


def run_store_command(root: Path, work: Callable[[Store], Any]) -> Any:
    """Open the store the command's flags describe, run one coroutine on it, close it."""
    settings = command_settings(root)
    if settings.backend == "filesystem":
        require_existing_root(root)

    async def main() -> Any:
        store = await asyncio.to_thread(build_store, settings)
        await store.start()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(main())


@click.command(cls=Command, doing="initialise the storage root")
@store_options
def init(root: Path) -> None:
    """Create a storage root, or check that an existing one is usable."""
    real = admin.init_root(root)
    click.echo(f"storage root ready: {real}")


@click.command(cls=Command)
@store_options
@click.argument("local_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("artifact_path", type=ARTIFACT_PATH)
@env_option("--ttl", type=DURATION, default=None, help="Retention, e.g. 7d (default: never).")
def put(root: Path, local_file: Path, artifact_path: str, ttl: float | None) -> None:
    """Import LOCAL_FILE into the store as ARTIFACT_PATH."""
    size = local_file.stat().st_size
    with click.progressbar(
        length=size,
        label=f"importing {artifact_path}",
        file=sys.stderr,
        show_pos=False,
        hidden=not sys.stderr.isatty(),
    ) as bar:
        info, replaced = run_store_command(
            root,
            lambda s: admin.import_file(
                s, local_file, artifact_path, ttl_seconds=ttl, progress=bar.update
            ),
        )
    verb = "replaced" if replaced else "stored"
    click.echo(f"{verb} {info.path} ({format_size(info.size)}, sha256 {info.sha256})")


@click.command(cls=Command, name="ls")
@store_options
@click.argument("prefix", default="")
@click.option("--json", "as_json", is_flag=True, help="One JSON document per artifact, as a list.")
def ls_command(root: Path, prefix: str, as_json: bool) -> None:
    """List artifacts whose path starts with PREFIX."""

    async def stream(store: Store) -> None:
        # Printed as read from the store's index: memory stays flat however many there are.
        first = True
        if as_json:
            click.echo("[", nl=False)
        async for info in admin.iter_listed(store, prefix):
            if as_json:
                document = json.dumps(artifact_document(info, with_last_accessed=True), indent=2)
                click.echo(("\n" if first else ",\n") + textwrap.indent(document, "  "), nl=False)
            else:
                expires = isoformat_utc(info.expires_at) or "never"
                digest = (info.sha256 or "(hashing)")[:12]
                click.echo(
                    f"{format_size(info.size):>10}  {digest:12}  expires {expires:20}  {info.path}"
                )
            first = False
        if as_json:
            click.echo("]" if first else "\n]")

    run_store_command(root, stream)


@click.command(cls=Command)
@store_options
@click.argument("artifact_path", type=ARTIFACT_PATH)
def rm(root: Path, artifact_path: str) -> None:
    """Delete ARTIFACT_PATH."""
    info = run_store_command(root, lambda s: s.delete(artifact_path))
    click.echo(f"deleted {info.path}")


@click.command(cls=Command)
@store_options
@settings_option(
    "max_size", help="Also evict least recently accessed artifacts beyond this total size."
)
@settings_option(
    "policies",
    help="Also keep each prefix with a max_size within it, e.g. "
    "'cache/:max_size=20GiB' (repeatable; other keys are read and ignored here).",
)
@click.option("--dry-run", is_flag=True, help="Report what would be removed, remove nothing.")
def gc(root: Path, max_size: int | None, policies: tuple[Policy, ...], dry_run: bool) -> None:
    """Run one eviction pass now: expired artifacts, crashed uploads, --max-size, and the
    max_size of --policy prefixes."""
    ticker = _EvictionTicker()
    report = run_store_command(
        root,
        lambda s: Evictor(
            s, max_size_bytes=max_size, policies=policies, on_evicted=ticker
        ).run_once(dry_run=dry_run),
    )
    ticker.done()
    if report.skipped:
        raise click.ClickException("another process is evicting right now; try again")
    verb = "would remove" if dry_run else "removed"
    for path in report.expired:
        click.echo(f"{verb} {path} (expired)")
    for path in report.over_size:
        prefix = report.over_prefix_size.get(path)
        budget = "--max-size" if prefix is None else f"the max_size of {prefix}"
        click.echo(f"{verb} {path} (over {budget})")
    click.echo(
        f"{verb} {len(report.expired)} expired and {len(report.over_size)} over-size "
        f"artifacts ({format_size(report.bytes_freed)}), {report.stale_uploads} stale uploads"
    )


@click.command(cls=Command)
@store_options
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
        raise click.exceptions.Exit(FAILED)
    click.echo("all artifacts match their digests")


class _EvictionTicker:
    """How many artifacts a long pass has evicted so far, on stderr when it is a terminal
    (one line rewritten in place, every TICK_EVERY evictions)."""

    TICK_EVERY = 1000

    def __init__(self) -> None:
        self.shown = sys.stderr.isatty()
        self.count = 0
        self.bytes = 0

    def __call__(self, info: ArtifactInfo, reason: EvictionReason) -> None:
        self.count += 1
        self.bytes += info.size
        if self.shown and self.count % self.TICK_EVERY == 0:
            click.echo(f"\revicted {self.count} ({format_size(self.bytes)})", nl=False, err=True)

    def done(self) -> None:
        if self.shown and self.count >= self.TICK_EVERY:
            click.echo(err=True)


def _progress_factory() -> Callable[[int], admin.Progress]:
    """A progress bar on stderr when it is a terminal, silent otherwise."""

    def make(total: int) -> admin.Progress:
        return click.progressbar(
            length=total, label="verifying", file=sys.stderr, hidden=not sys.stderr.isatty()
        )

    return make


@click.command(cls=Command)
@store_options
def du(root: Path) -> None:
    """Show how many artifacts the store holds and their total size."""
    usage = run_store_command(root, admin.disk_usage)
    click.echo(f"{usage.artifacts} artifacts, {format_size(usage.bytes)} ({usage.bytes} bytes)")


STORE_COMMANDS = (init, put, ls_command, rm, gc, verify, du)
