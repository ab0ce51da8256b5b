"""The read index: exact versions only, at one generation, and never more than its bound."""

from __future__ import annotations

import hashlib
from pathlib import Path

from artifactd.http.mediatypes import guess_content_type
from artifactd.store.filesystem.hotcache import GenerationCounter
from artifactd.store.filesystem.metadb import VersionRow
from artifactd.store.filesystem.readindex import ReadIndex


def row(path: str, ino: int = 7, expires_at: float | None = None) -> VersionRow:
    digest = hashlib.sha256(path.encode()).hexdigest()
    return VersionRow(path, ino, 10, 99, digest, "text/plain", 5.0, expires_at, None)


def test_an_entry_describes_one_version_at_one_generation() -> None:
    index = ReadIndex()
    index.note(row("a", expires_at=123.5), generation=4)
    found = index.find("a", 7, 10, 99, 4)
    kept = row("a", expires_at=123.5)
    assert found == (kept.sha256, "text/plain", 5.0, 123.5)
    assert index.find("a", 8, 10, 99, 4) is None  # another inode
    assert index.find("a", 7, 11, 99, 4) is None  # another size
    assert index.find("a", 7, 10, 98, 4) is None  # another mtime
    assert index.find("a", 7, 10, 99, 5) is None  # the root changed since
    assert index.find("b", 7, 10, 99, 4) is None


def test_unhashed_rows_are_not_kept_and_the_bound_holds() -> None:
    index = ReadIndex(max_entries=3)
    index.note(VersionRow("x", 1, 1, 1, None, None, 0.0, None, None), 0)
    assert len(index) == 0
    for name in "abcde":
        index.note(row(name), 0)
    assert len(index) == 3
    assert [index.find(n, 7, 10, 99, 0) is not None for n in "abcde"] == [0, 0, 1, 1, 1]
    index.note(row("e", ino=9), 1)  # a new version of a kept path takes no more room
    assert len(index) == 3
    index.forget("e")
    assert len(index) == 2


def test_a_row_without_a_content_type_is_kept_with_the_type_a_read_gives() -> None:
    index = ReadIndex()
    index.note(VersionRow("d/page.html", 7, 10, 99, "ab" * 32, None, 5.0, None, None), 0)
    index.note(VersionRow("d/blob", 8, 10, 99, "cd" * 32, None, 5.0, None, None), 0)
    assert index.find("d/page.html", 7, 10, 99, 0) == ("ab" * 32, "text/html", 5.0, None)
    assert index.find("d/blob", 8, 10, 99, 0) == (
        "cd" * 32,
        guess_content_type("d/blob"),
        5.0,
        None,
    )


def counter_at(tmp_path: Path, value: int) -> GenerationCounter:
    counter = GenerationCounter(tmp_path / "row-generation", writable=True)
    for _ in range(value):
        counter.bump()
    return counter


def test_a_change_this_process_makes_keeps_the_entries_of_other_paths(tmp_path: Path) -> None:
    """A delete, an eviction or a forgotten row of this process's own store: only the
    entries of its paths go; the root's row generation moves for every other process."""
    counter = counter_at(tmp_path, 4)
    index = ReadIndex()
    index.note(row("a"), 4)
    index.note(row("b", ino=8), 4)
    index.bump(counter, ["a"])
    assert counter.value == 5
    assert index.find("a", 7, 10, 99, 5) is None  # what changed
    assert index.find("b", 8, 10, 99, 5) is not None  # the rest, still good
    index.note(row("a"), 4)  # a row read before the change, noted after it
    assert index.find("a", 7, 10, 99, 5) is None
    index.note(row("a", ino=9), 5)
    assert index.find("a", 9, 10, 99, 5) is not None


def test_a_change_this_process_cannot_name_retires_every_entry(tmp_path: Path) -> None:
    counter = counter_at(tmp_path, 4)
    index = ReadIndex()
    index.note(row("b", ino=8), 4)
    index.bump(counter, None)
    assert index.find("b", 8, 10, 99, 5) is None


def test_a_change_by_another_process_retires_every_entry(tmp_path: Path) -> None:
    counter = counter_at(tmp_path, 4)
    index = ReadIndex()
    index.note(row("b", ino=8), 4)
    counter.bump()  # another process's change, not seen by this index
    index.bump(counter, ["a"])
    assert counter.value == 6
    assert index.find("b", 8, 10, 99, 6) is None
    index.note(row("c"), 6)  # learnt afresh at the new generation: the old entries stay out
    assert index.find("c", 7, 10, 99, 6) is not None
    assert index.find("b", 8, 10, 99, 6) is None
    index.note(row("b", ino=8), 5)  # read at a generation older than the index's
    assert index.find("b", 8, 10, 99, 6) is None
