"""resolve_inside: the real path of an artifact inside the root, as os.path.realpath gives
it, for the price of one lstat per component below the root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from artifactd.errors import InvalidPathError, NotFoundError
from artifactd.store.filesystem.confinement import look_inside, resolve_inside


@pytest.fixture
def root(tmp_path: Path) -> Path:
    real = tmp_path / "deep" / "er" / "root"
    (real / ".artifactd").mkdir(parents=True)
    (real / "dir" / "sub").mkdir(parents=True)
    (real / "dir" / "file").write_bytes(b"x")
    (real / "inner").symlink_to(real / "dir")
    (real / "outer").symlink_to(tmp_path)
    (real / "state").symlink_to(real / ".artifactd")
    (real / "dangling").symlink_to(real / "nowhere" / "at-all")
    return real


# Paths inside the root: plain ones, links to directories inside it, a dangling link, and
# paths below a file or below something absent.
INSIDE = [
    "dir",
    "dir/sub",
    "dir/sub/new",
    "dir/new/deeper/still",
    "dir/file",
    "dir/file/below-a-file",
    "new",
    "inner",
    "inner/sub/x",
    "inner/file",
    "dangling",
    "dangling/x",
]


@pytest.mark.parametrize("path", ["", *INSIDE])
def test_resolves_as_realpath_does(root: Path, path: str) -> None:
    assert resolve_inside(root, path) == os.path.realpath(os.path.join(root, path))


@pytest.mark.parametrize("path", ["outer", "outer/x", "inner/../../x"])
def test_links_and_dot_dots_leaving_the_root_are_refused(root: Path, path: str) -> None:
    with pytest.raises(InvalidPathError):
        resolve_inside(root, path)


@pytest.mark.parametrize("path", [".artifactd", ".artifactd/metadata.db", "state", "state/x"])
def test_the_internal_directory_is_never_reached(root: Path, path: str) -> None:
    with pytest.raises(NotFoundError):
        resolve_inside(root, path)


def test_a_plain_path_costs_one_lstat_per_component_below_the_root(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not one per component of the root's own path (realpath's), which is already real:
    an upload resolves its path twice, and this was its largest Python cost."""
    calls: list[str] = []
    lstat = os.lstat

    def counting_lstat(path: str, *args: object, **kwargs: object) -> os.stat_result:
        calls.append(os.fspath(path))
        return lstat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "lstat", counting_lstat)
    assert resolve_inside(root, "dir/sub/new") == str(root / "dir" / "sub" / "new")
    assert len(calls) <= 3


@pytest.mark.parametrize("path", INSIDE)
def test_look_inside_sees_what_a_stat_after_resolving_sees(root: Path, path: str) -> None:
    """One walk for the path and what is at it: the stat of the target (links followed) or
    None, and whether its parent is a directory already (only ever True when it is)."""
    os_path, st, parent_ready = look_inside(root, path)
    assert os_path == resolve_inside(root, path)
    try:
        expected: os.stat_result | None = os.stat(os_path)
    except OSError:
        expected = None
    if expected is None:
        assert st is None
    else:
        assert st is not None and (st.st_ino, st.st_mode) == (expected.st_ino, expected.st_mode)
    if parent_ready:
        assert os.path.isdir(os.path.dirname(os_path))
    if path in ("dir/sub/new", "new", "dir/file", "dir/sub"):
        assert parent_ready  # the common cases need no look at the parent of their own


@pytest.mark.parametrize("path", ["outer/x", ".artifactd/metadata.db", "state/x"])
def test_look_inside_refuses_what_resolve_inside_refuses(root: Path, path: str) -> None:
    with pytest.raises((InvalidPathError, NotFoundError)):
        look_inside(root, path)
