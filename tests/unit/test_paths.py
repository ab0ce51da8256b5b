"""Artifact path safety (SPEC "Artifact paths")."""

from __future__ import annotations

import random
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artifactd import paths
from artifactd.errors import InvalidPathError
from artifactd.paths import (
    INTERNAL_DIR,
    MAX_PATH_BYTES,
    MAX_SEGMENT_BYTES,
    is_internal,
    join_path,
    names_directory,
    parent_and_name,
    parse_artifact_path,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ""),
        ("myproj/1234/app.tar.gz", "myproj/1234/app.tar.gz"),
        ("myproj/1234/", "myproj/1234"),
        ("a", "a"),
        ("a%20b", "a b"),
        ("caf%C3%A9", "café"),
        ("café", "café"),
        ("%E2%9C%93.txt", "✓.txt"),
        ("100%25", "100%"),
        ("%2541", "%41"),
        ("...", "..."),
        ("a..b/.hidden/..x", "a..b/.hidden/..x"),
        ("Makefile", "Makefile"),
        (".artifactd", ".artifactd"),
        ("a" * MAX_SEGMENT_BYTES, "a" * MAX_SEGMENT_BYTES),
        ("é" * (MAX_SEGMENT_BYTES // 2), "é" * (MAX_SEGMENT_BYTES // 2)),
    ],
)
def test_safe_paths_are_decoded_once_and_lose_a_trailing_slash(raw: str, expected: str) -> None:
    assert parse_artifact_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (".", ""),
        ("./", ""),
        ("./.", ""),
        ("%2e", ""),
        ("./a", "a"),
        ("a/./b", "a/b"),
        ("a/%2e/b", "a/b"),
        ("a/%2E/b", "a/b"),
        ("a/.", "a"),
        ("a/./", "a"),
        ("repo/./InRelease", "repo/InRelease"),
        ("./././x/./%2e/y", "x/y"),
        ("%2e/.hidden/...", ".hidden/..."),
        ("./.artifactd/x", ".artifactd/x"),  # still internal: callers answer 404
    ],
)
def test_dot_segments_are_dropped(raw: str, expected: str) -> None:
    """RFC 3986 §5.2.4 and §6.2.2.3: `a/./b` is `a/b` (apt and rclone send `repo/./x`)."""
    assert parse_artifact_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "directory"),
    [
        ("", True),
        ("a/", True),
        (".", True),
        ("a/.", True),
        ("a/%2e", True),
        ("a/%2E", True),
        ("./", True),
        ("a", False),
        ("a/./b", False),
        ("a/.b", False),
        ("a/%2e%2e", False),
        ("a/..", False),
    ],
)
def test_a_tail_names_a_directory_when_it_ends_with_a_slash_or_a_dot(
    raw: str, directory: bool
) -> None:
    assert names_directory(raw) is directory


@pytest.mark.parametrize(
    "raw",
    [
        "/etc/passwd",
        "/",
        "//a",
        "a//b",
        "a//",
        "a/b//",
        "..",
        "a/../b",
        "a/..",
        "../etc/passwd",
        "%2e%2e",
        "%2E%2E/x",
        "%2e%2E",
        ".%2e",
        "%2e.",
        "a/%2e%2e/b",
        "./..",
        "./../a",
        "a/./../b",
        "a/%2e/%2e%2e/b",
        "a/.//b",
        ".//a",
        "%252e",
        "a/%252e/b",
        "%252E",
        "%252e%252e",
        "%25252e%25252e",
        "..%252f",
        "a%2fb",
        "a%2Fb",
        "%2fetc",
        "a%252fb",
        "a%255cb",
        "a%2500b",
        "a\\b",
        "a%5cb",
        "..%5c..",
        "a%00b",
        "a\x00b",
        "a%0ab",
        "a%0d%0aX-Injected:1",
        "a%09b",
        "a%7fb",
        "a%c2%85b",
        "a%c2%9fb",
        "%zz",
        "%4",
        "a%",
        "a%g0",
        "%c0%ae%c0%ae",
        "%c0%af",
        "%e0%80%ae",
        "%ff",
        "%ed%a0%80",
        "caf%e9",
        "a\udcff",
        "a" * (MAX_SEGMENT_BYTES + 1),
        "é" * (MAX_SEGMENT_BYTES // 2 + 1),
        "/".join(["a" * 100] * 11),
    ],
)
def test_unsafe_or_malformed_paths_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidPathError):
        parse_artifact_path(raw)


def test_a_path_of_exactly_the_maximum_length_is_accepted() -> None:
    raw = "/".join(["a" * 254] * 4 + ["bbbb"])
    assert len(raw) == MAX_PATH_BYTES
    assert parse_artifact_path(raw) == raw
    with pytest.raises(InvalidPathError):
        parse_artifact_path(raw + "b")


def test_the_maximum_length_counts_utf8_bytes_not_characters() -> None:
    with pytest.raises(InvalidPathError):
        parse_artifact_path("/".join([quote("é" * 100)] * 6))


@pytest.mark.parametrize(
    ("path", "internal"),
    [
        (INTERNAL_DIR, True),
        (".artifactd/meta.db", True),
        (".artifactd/tmp/x", True),
        ("", False),
        (".artifactdx", False),
        (".Artifactd", False),
        ("a/.artifactd", False),
        ("artifactd", False),
    ],
)
def test_only_paths_under_the_internal_directory_are_internal(path: str, internal: bool) -> None:
    assert is_internal(path) is internal


@pytest.mark.parametrize(
    ("path", "parent", "name"),
    [("a/b/c", "a/b", "c"), ("a", "", "a"), (".artifactd/x", ".artifactd", "x")],
)
def test_parent_and_name_split_at_the_last_slash(path: str, parent: str, name: str) -> None:
    assert parent_and_name(path) == (parent, name)


def test_the_root_has_no_parent() -> None:
    with pytest.raises(InvalidPathError):
        parent_and_name("")


@pytest.mark.parametrize(
    ("directory", "name", "expected"),
    [("", "a", "a"), ("a/b", "c", "a/b/c"), ("a", "b c", "a/b c")],
)
def test_join_path_appends_one_segment(directory: str, name: str, expected: str) -> None:
    assert join_path(directory, name) == expected


@pytest.mark.parametrize(
    ("directory", "name"),
    [
        ("a", ""),
        ("a", "."),
        ("a", ".."),
        ("a", "b/c"),
        ("a", "b\\c"),
        ("a", "b\x00"),
        ("a", "%2e%2e"),
        ("a", "x" * 256),
        ("a" * 1000, "x" * 100),
        ("a", "\udcff"),
    ],
)
def test_join_path_refuses_names_that_are_not_one_safe_segment(directory: str, name: str) -> None:
    with pytest.raises(InvalidPathError):
        join_path(directory, name)


PATH_ALPHABET = st.sampled_from([*"ab./\\%25eE2fF0c\x00\x85é ", "%2e", "%2f", "%25"])
raw_paths = st.one_of(st.text(), st.lists(PATH_ALPHABET, max_size=30).map("".join))


@given(raw_paths)
def test_parsing_any_text_either_rejects_it_or_returns_a_safe_path(raw: str) -> None:
    try:
        path = parse_artifact_path(raw)
    except InvalidPathError:
        return
    assert not path.startswith("/")
    assert "\\" not in path and "\x00" not in path
    if path:
        assert all(segment not in ("", ".", "..") for segment in path.split("/"))
    assert len(path.encode()) <= MAX_PATH_BYTES


@given(raw_paths)
def test_a_parsed_path_survives_quoting_and_parsing_again(raw: str) -> None:
    try:
        path = parse_artifact_path(raw)
    except InvalidPathError:
        return
    assert parse_artifact_path(quote(path, safe="/")) == path
    if path:
        assert parse_artifact_path(quote(path, safe="/") + "/") == path


segments = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\%"),
    min_size=1,
    max_size=20,
).filter(lambda s: s not in (".", ".."))


@given(st.lists(segments, min_size=1, max_size=5))
def test_any_quoted_plain_path_is_accepted_unchanged(parts: list[str]) -> None:
    path = "/".join(parts)
    assert parse_artifact_path(quote(path, safe="/")) == path


@given(
    st.lists(segments, min_size=1, max_size=5),
    st.lists(st.tuples(st.integers(0, 5), st.sampled_from([".", "%2e", "%2E"])), max_size=4),
)
def test_dot_segments_anywhere_name_the_same_path(
    parts: list[str], dots: list[tuple[int, str]]
) -> None:
    segments = [quote(part) for part in parts]
    for index, dot in dots:
        segments.insert(min(index, len(segments)), dot)
    assert parse_artifact_path("/".join(segments)) == "/".join(parts)


@given(
    st.lists(segments, min_size=1, max_size=5),
    st.integers(0, 5),
    st.sampled_from(["..", "%2e%2e", "%2E%2e", ".%2e", "%2e."]),
)
def test_a_dotdot_segment_anywhere_is_refused(parts: list[str], index: int, dotdot: str) -> None:
    segments = [quote(part) for part in parts]
    segments.insert(min(index, len(segments)), dotdot)
    with pytest.raises(InvalidPathError):
        parse_artifact_path("/".join(segments))


def test_the_plain_path_shortcut_answers_as_the_general_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`_plain` only skips work: for any tail, the answer (or the refusal) is the same."""
    rnd = random.Random(11)
    alphabet = [
        "a",
        "b",
        ".",
        "/",
        "%",
        "2e",
        "%2F",
        "\\",
        "\x7f",
        "\x00",
        "é",
        "~",
        "-",
        "x" * 120,
    ]
    tails = ["a", "a/b.c", "k/00/000001.bin", ".hidden/x", "a/./b", "a/..", "..", "a//b", "x" * 256]
    tails += [
        "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(1, 12))) for _ in range(4000)
    ]

    def answer(tail: str) -> str | type[Exception]:
        try:
            return paths.parse_artifact_path(tail)
        except InvalidPathError:
            return InvalidPathError

    fast = [answer(tail) for tail in tails]
    monkeypatch.setattr(paths, "_plain", lambda raw: False)
    assert [answer(tail) for tail in tails] == fast
