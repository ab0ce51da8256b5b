"""Group commit for the filesystem backend: uploads and deletes that arrive together are
published by one batch (groupcommit.py runs them): one hold of the write lock, one durable
metadata transaction, the renames and unlinks in arrival order, one fsync per directory.

The order is what keeps a crash harmless: an upload's bytes are flushed first (by its own
thread), then the batch's rows are made durable, then the files are renamed into place,
then their directories are flushed, and only then is anyone answered. A crash before a
rename leaves at most a row describing no file (never served, forgotten later); after it,
the version is whole and has its row.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from artifactd.errors import (
    ArtifactdError,
    ConflictError,
    NotFoundError,
    StorageFullError,
)
from artifactd.http.mediatypes import guess_content_type
from artifactd.store.base import ArtifactInfo, Requirement
from artifactd.store.filesystem.confinement import look_inside, resolve_inside
from artifactd.store.filesystem.groupcommit import GroupCommit
from artifactd.store.filesystem.metadb import VersionRow
from artifactd.store.filesystem.upload import (
    READ_ONLY_MESSAGE,
    FileUpload,
    fsync_dir,
    translate_write_error,
)
from artifactd.store.filesystem.writes import LockedWrites, info_from_row
from artifactd.store.uploads import check_digest


@dataclass(eq=False)
class Publish:
    """An upload waiting to be published by a batch."""

    upload: FileUpload
    sha256: str
    st: os.stat_result | None  # of the flushed temp file; None: not flushed (see _judge_keep)
    require: Requirement | None


@dataclass(eq=False)
class Removal:
    """A delete waiting for a batch."""

    path: str
    require: Requirement | None


Write = Publish | Removal
# What a write answers: the version published (or kept, or removed) and whether one was
# there before.
Outcome = tuple[ArtifactInfo, bool]
Answer = Outcome | BaseException


@dataclass(eq=False)
class _Step:
    """One write of a batch that passed its checks, as it will be applied."""

    index: int  # in the batch
    path: str
    os_path: str
    kind: Literal["rename", "unlink", "keep"]
    row: VersionRow | None = None  # recorded in the batch's transaction
    st: os.stat_result | None = None  # the version published or kept
    current: ArtifactInfo | None = None  # the version replaced or removed
    upload: FileUpload | None = None
    made_in: list[str] = field(default_factory=list)  # parents of directories made for it
    # Whether the step changes a row the read index may hold for an inode at its path.
    changes_row: bool = False
    # The version as judged (without an access time): the answer, unless an access was
    # noted meanwhile.
    judged: ArtifactInfo | None = None
    # Something is at its path when it is renamed there (a version replaced): known from
    # the judge's look, under the write lock, and what the writes before it in the batch do.
    occupied: bool = False
    directory: str = field(init=False)  # whose entry it changes

    def __post_init__(self) -> None:
        self.directory = os.path.dirname(self.os_path)

    def outcome(self, accessed: float | None) -> Outcome:
        if self.kind == "unlink":
            assert self.current is not None
            return self.current, True
        assert self.st is not None and self.row is not None and self.upload is not None
        if self.kind == "keep":
            self.upload.kept_current = True
        if accessed is None and self.judged is not None:
            return self.judged, self.current is not None
        info = info_from_row(self.path, self.st, self.row, accessed)
        return info, self.current is not None


class BatchedWrites(LockedWrites):
    """Commits and deletes in batches (a mixin of FilesystemStore, like LockedWrites)."""

    commits: GroupCommit[Write, Outcome]

    def prepare_commit_sync(
        self,
        upload: FileUpload,
        expected_sha256: str | None,
        require: Requirement | None,
        *,
        fresh: bool = False,
    ) -> Publish:
        """The upload's own step, in its own thread and outside any lock: check the digest
        and flush the bytes, so that uploads flush in parallel and the batch only
        publishes. An upload that looks identical to the current version is not flushed
        (the batch keeps the current version if it still is). `fresh`: the upload's file
        was made in this same thread hop, so what it found at its path then is current."""
        sha256 = upload.hasher.hexdigest()
        check_digest(expected_sha256, sha256)
        if fresh and upload.found_nothing:  # no current version to look at: a new path
            return Publish(upload, sha256, _flush(upload), require)
        # As resolved when its file was made; the batch resolves it again under the lock.
        os_path = upload.os_path or resolve_inside(self.root, upload.path)
        content_type = upload.content_type or guess_content_type(upload.path)
        current = self._current_sync(upload.path, os_path)  # IsDirectoryError before any fsync
        if current is not None and (current.sha256, current.content_type) == (
            sha256,
            content_type,
        ):
            return Publish(upload, sha256, None, require)
        return Publish(upload, sha256, _flush(upload), require)

    async def delete(self, path: str, *, require: Requirement | None = None) -> ArtifactInfo:
        if self.read_only:
            raise StorageFullError(READ_ONLY_MESSAGE)
        info, _ = await self.commits.submit(Removal(path, require))
        return info

    def _write_batch_sync(self, items: Sequence[Write]) -> Callable[[], list[Answer]]:
        """Publish and remove a batch under one hold of the write lock (see groupcommit.py);
        returns what makes it durable and answers it (`_finish_batch`), which runs while the
        next batch takes the lock.

        Each write is judged in arrival order against what the writes before it in the batch
        leave (`require` sees exactly the version it replaces); then the new versions' rows
        go in one transaction made durable before any rename, so a version is never visible
        without its row and a crash leaves at most a row describing no file (removed with
        the dead writer's temp file); then the renames and unlinks, in order; then, outside
        the lock, one fsync per directory whose entries changed. Only then is anyone
        answered. A write that fails (a precondition, a full disk) fails alone."""
        outcomes: list[Answer | None] = [None] * len(items)
        if self.read_only:
            return lambda: [StorageFullError(READ_ONLY_MESSAGE) for _ in items]
        dirs: dict[str, list[_Step]] = {}  # directories to fsync, and whose writes they hold
        with self._write_lock.held():
            self._forget_stale_rows()
            planned: dict[str, ArtifactInfo | None] = {}
            plain_dirs: set[str] = set()  # see look_inside
            steps: list[_Step] = []
            for index, item in enumerate(items):
                try:
                    steps.append(self._judge(index, item, planned, plain_dirs))
                except (ArtifactdError, OSError) as exc:
                    outcomes[index] = _failure(exc)
            self._note_rows_left(steps)
            steps = self._record_rows(steps, outcomes)
            steps = self._apply(steps, outcomes, dirs)
        return lambda: self._finish_batch(steps, outcomes, dirs)

    def _finish_batch(
        self, steps: list[_Step], outcomes: list[Answer | None], dirs: dict[str, list[_Step]]
    ) -> list[Answer]:
        """Outside the lock: flush each changed directory once, then the answers."""
        for directory, error in _fsync_dirs(dirs).items():
            for step in dirs[directory]:
                outcomes[step.index] = error
        for step in steps:
            if outcomes[step.index] is not None:
                continue
            outcomes[step.index] = step.outcome(self._accessed.get(step.path))
            if step.kind == "rename":
                assert step.upload is not None
                step.upload.close_fd()  # here, not by another thread hop of its own
            if step.kind == "unlink":
                self._accessed.forget(step.path)
        return [o if o is not None else RuntimeError("write left unanswered") for o in outcomes]

    def _judge(
        self,
        index: int,
        item: Write,
        planned: dict[str, ArtifactInfo | None],
        plain_dirs: set[str],
    ) -> _Step:
        """Under the write lock: what `item` will do, judged against what is at its path now
        or what the writes before it in the batch leave there (`planned`, updated)."""
        if isinstance(item, Removal):
            os_path, there, _ = look_inside(self.root, item.path, plain_dirs)
            current = self._current_at(item.path, there, planned)
            if item.require is not None:
                item.require(current)
            if current is None:
                raise NotFoundError(item.path)
            planned[item.path] = None
            return _Step(index, item.path, os_path, "unlink", current=current)
        upload = item.upload
        # Resolved and looked at in one walk: what is there, and whether its parent is.
        os_path, there, parent_ready = look_inside(self.root, upload.path, plain_dirs)
        if item.st is None:  # it looked identical to the current version
            kept = self._judge_keep(index, item, os_path, planned)
            if kept is not None:
                return kept
            item.st = _flush(upload)
        # An earlier rename or kept version of this batch counts, as its removal does not
        # (the unlink goes first); saying so when nothing is there only costs a look at
        # its rows later (`_stale_rows`).
        occupied = there is not None or planned.get(upload.path) is not None
        current = self._current_at(upload.path, there, planned)
        if item.require is not None:
            item.require(current)
        try:
            made = [] if parent_ready else _make_parents(os.path.dirname(os_path))
        except (FileExistsError, NotADirectoryError) as exc:
            raise ConflictError(f"a parent of {upload.path} is a file") from exc
        except OSError as exc:
            raise translate_write_error(exc) from exc
        if made:
            resolve_inside(self.root, upload.path)  # the parents just made must not escape
        now = time.time()
        st = item.st
        row = VersionRow(
            upload.path,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
            item.sha256,
            upload.content_type,
            now,
            upload.expires_at,
            now,
            origin="upload",
        )
        judged = planned[upload.path] = info_from_row(upload.path, st, row, None)
        return _Step(
            index,
            upload.path,
            os_path,
            "rename",
            row,
            st,
            current,
            upload,
            [str(d.parent) for d in made],
            # Replacing a version changes a row; for a new path, see _note_rows_left.
            changes_row=current is not None,
            judged=judged,
            occupied=occupied,
        )

    def _note_rows_left(self, steps: list[_Step]) -> None:
        """Under the write lock, before the batch's rows: a new version whose path has a row
        left (its file deleted by hand, or replaced with its row not yet forgotten) changes
        a row the read index may hold if the inode comes back, and a hot cache may hold the
        version it describes (both trust the row generation). One query for the batch."""
        new = [step for step in steps if step.kind == "rename" and not step.changes_row]
        if new:
            with_rows = self.db.paths_with_rows([step.path for step in new])
            for step in new:
                step.changes_row = step.path in with_rows

    def _judge_keep(
        self, index: int, item: Publish, os_path: str, planned: dict[str, ArtifactInfo | None]
    ) -> _Step | None:
        """The current version with the upload's expiry, if it still holds the upload's
        bytes and content type: no fsync, no rename, one row rewritten. None otherwise."""
        upload = item.upload
        if upload.path in planned:
            return None  # an earlier write of this batch replaces it
        content_type = upload.content_type or guess_content_type(upload.path)
        current = self._current_sync(upload.path, os_path)
        if current is None or (current.sha256, current.content_type) != (
            item.sha256,
            content_type,
        ):
            return None
        if item.require is not None:
            item.require(current)
        st = os.stat(os_path)
        row = self.db.find(upload.path, st.st_ino)
        if row is None or not row.matches(st.st_ino, st.st_size, st.st_mtime_ns):
            return None
        kept = replace(row, expires_at=upload.expires_at)
        judged = planned[upload.path] = info_from_row(upload.path, st, kept, None)
        step = _Step(index, upload.path, os_path, "keep", kept, st, current, upload)
        step.judged = judged
        step.changes_row = kept.expires_at != row.expires_at
        return step

    def _current_at(
        self, path: str, there: os.stat_result | None, planned: dict[str, ArtifactInfo | None]
    ) -> ArtifactInfo | None:
        """What the writes before it in the batch leave at `path`, else the live version
        `there` (the judge's look at it) describes."""
        if path in planned:
            return planned[path]
        return None if there is None else self._current_from(path, there)

    def _record_rows(self, steps: list[_Step], outcomes: list[Answer | None]) -> list[_Step]:
        """The rows of the batch in one durable transaction; if the database cannot take
        them all (a full disk), each alone, and the writes whose row failed fail."""
        rows = [step.row for step in steps if step.row is not None]
        try:
            self.db.record_versions(rows)
            return steps
        except StorageFullError:
            pass
        recorded: list[_Step] = []
        for step in steps:
            try:
                if step.row is not None:
                    self.db.record_versions([step.row])
            except StorageFullError as exc:
                outcomes[step.index] = exc
                continue
            recorded.append(step)
        return recorded

    def _apply(
        self,
        steps: list[_Step],
        outcomes: list[Answer | None],
        dirs: dict[str, list[_Step]],
    ) -> list[_Step]:
        """Under the write lock, after the rows: the renames and unlinks in arrival order,
        then the directories removals left empty, then the rows of replaced and removed
        versions. Returns the steps that took effect; `dirs` gets the directories to
        fsync."""
        done: list[_Step] = []
        emptied: set[str] = set()
        for step in steps:
            try:
                if step.kind == "rename":
                    assert step.upload is not None and step.upload.tmp_path is not None
                    os.rename(step.upload.tmp_path, step.os_path)
                    if step.occupied:
                        self._stale_rows.add(step.path)
                        step.changes_row = True  # the inode replaced may come back here
                    for parent in step.made_in:
                        dirs.setdefault(parent, []).append(step)
                elif step.kind == "unlink":
                    os.unlink(step.os_path)
                    step.changes_row = True
                    emptied.add(step.directory)
                    self._stale_rows.add(step.path)
            except OSError as exc:
                if step.kind == "rename":
                    self._stale_rows.add(step.path)  # the row just written
                failure = exc if step.kind == "rename" else _missing(step.path, exc)
                outcomes[step.index] = _failure(failure)
                continue
            done.append(step)
            if step.kind != "keep":
                dirs.setdefault(step.directory, []).append(step)
        if done:
            self._bump_generation()  # every process's hot cache drops what changed
        changed = [step.path for step in done if step.changes_row]
        if changed:
            self._bump_row_generation(changed)  # and read indexes, only for these
        for directory in sorted(emptied, key=lambda p: p.count("/"), reverse=True):
            self._remove_empty_parents(Path(directory))
        root = str(self.root)
        for directory in emptied:  # removed with its parents: the first one left holds the entry
            if not os.path.isdir(directory):
                held = dirs.pop(directory, [])
                while not os.path.isdir(directory) and directory != root:
                    directory = os.path.dirname(directory)
                dirs.setdefault(directory, []).extend(held)
                for step in held:
                    step.directory = directory
        if not self._forget_stale_rows() and emptied and self._reserve.release():
            self._forget_stale_rows()
        if emptied:
            self._reserve.refill()
        return done


def _flush(upload: FileUpload) -> os.stat_result:
    """fsync the upload's temp file (made now if no byte was written); its stat once
    durable."""
    fd = upload.open_sync()
    try:
        os.fsync(fd)
    except OSError as exc:
        raise translate_write_error(exc) from exc
    return os.fstat(fd)


def _make_parents(path: str) -> list[Path]:
    """`mkdir -p`, returning the directories it made, topmost first (each one's entry is in
    its parent, which must be flushed too)."""
    if os.path.isdir(path):
        return []  # the usual case, without a Path
    directory = Path(path)
    missing: list[Path] = []
    while not directory.is_dir() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    for made in reversed(missing):
        made.mkdir(exist_ok=True)
    return missing[::-1]


def _fsync_dirs(dirs: dict[str, list[_Step]]) -> dict[str, BaseException]:
    """fsync each directory once; the ones that failed, with the error their writes get. A
    directory removed meanwhile (by another process's delete) needs nothing."""
    failed: dict[str, BaseException] = {}
    for directory in dirs:
        try:
            fsync_dir(directory)
        except FileNotFoundError:
            continue
        except OSError as exc:
            failed[directory] = translate_write_error(exc)
    return failed


def _failure(exc: BaseException) -> BaseException:
    return translate_write_error(exc) if isinstance(exc, OSError) else exc


def _missing(path: str, exc: OSError) -> BaseException:
    """A removal's unlink failing: gone meanwhile is NotFoundError."""
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return NotFoundError(path)
    return translate_write_error(exc)
