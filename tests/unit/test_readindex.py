"""The read index: exact versions only, at one generation, and never more than its bound."""

from __future__ import annotations

import hashlib

from artifactd.http.mediatypes import guess_content_type
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
