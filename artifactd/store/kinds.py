"""What stands at a path, asked of any store through its contract: a file, a directory, or
nothing; and the conflicts a new file there would meet, judged before its body is read."""

from __future__ import annotations

from artifactd.errors import ConflictError, IsDirectoryError, NotFoundError
from artifactd.paths import parent_and_name
from artifactd.store.base import EntryType, Store

Kind = EntryType | None


async def kind_of(store: Store, path: str) -> Kind:
    """Whether `path` is a file, a directory, or nothing (expired files are nothing)."""
    if not path:
        return "dir"
    try:
        await store.info(path)
    except IsDirectoryError:
        return "dir"
    except NotFoundError:
        return None
    return "file"


async def check_creatable(store: Store, path: str) -> None:
    """Raise the commit's own errors early: IsDirectoryError when `path` is a directory,
    ConflictError when a parent of it is a file. The commit judges both again, so a change
    meanwhile is still caught; this only spares a body that would be refused."""
    kind = await kind_of(store, path)
    if kind == "dir":
        raise IsDirectoryError(path)
    if kind == "file":
        return
    parent = parent_and_name(path)[0]
    while parent:  # the nearest existing ancestor decides: a directory, or a file
        kind = await kind_of(store, parent)
        if kind == "dir":
            return
        if kind == "file":
            raise ConflictError(f"a parent of {path} is a file")
        parent = parent_and_name(parent)[0]
