"""docs/architecture.md matches the tree, and imports keep the layering rules it states."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "artifactd"
DOC = PACKAGE.parent / "docs" / "architecture.md"


def module_files() -> list[str]:
    """Every module of the package, as a path relative to it (`web/download/plan.py`)."""
    return sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py"))


def documented_files() -> list[str]:
    """The modules the doc's tree lists, rebuilt into paths from its indentation."""
    tree = DOC.read_text().split("```")[1]
    folders: list[tuple[int, str]] = []
    files = []
    for line in tree.splitlines()[2:]:  # past the opening ``` line's rest and `artifactd/`
        match = re.match(r"( *)(\S+)", line)
        if not match:
            continue
        depth, name = len(match.group(1)), match.group(2)
        folders = [(d, f) for d, f in folders if d < depth]
        prefix = "".join(f for _, f in folders)
        if name.endswith("/"):
            folders.append((depth, name))
        elif name.endswith(".py"):
            files.append(prefix + name)
    return sorted(files)


def test_the_doc_lists_every_module_and_only_modules_that_exist() -> None:
    listed = set(documented_files())
    # A subpackage's __init__.py (its docstring, re-exports) is described by its folder's line.
    present = {f for f in module_files() if not f.endswith("/__init__.py")}
    assert sorted(present - listed) == [], "modules missing from docs/architecture.md"
    assert sorted(listed - set(module_files())) == [], "docs/architecture.md lists ghosts"


def imports_of(relative: str) -> set[str]:
    """The artifactd modules one module imports (`artifactd.store.base`, ...)."""
    tree = ast.parse((PACKAGE / relative).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "artifactd":
                found |= {f"artifactd.{alias.name}" for alias in node.names}
            elif node.module.startswith("artifactd."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("artifactd.")}
    return found


def third_party_imports_of(relative: str) -> set[str]:
    tree = ast.parse((PACKAGE / relative).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
    return names


def module_name(relative: str) -> str:
    return "artifactd." + relative.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def inside(module: str, *areas: str) -> bool:
    return any(module == f"artifactd.{a}" or module.startswith(f"artifactd.{a}.") for a in areas)


@pytest.mark.parametrize("relative", module_files())
def test_imports_keep_the_layering_rules(relative: str) -> None:
    me = module_name(relative)
    imported = imports_of(relative)
    if inside(me, "http"):
        assert imported <= {"artifactd.errors"} | {i for i in imported if inside(i, "http")}
        assert "aiohttp" not in third_party_imports_of(relative)
    if inside(me, "store"):
        assert not {i for i in imported if inside(i, "web", "cli", "server", "supervisor")}
        backends = ("store.filesystem", "store.s3", "store.memory")
        own = next((b for b in backends if inside(me, b)), None)
        if me != "artifactd.store.factory":
            assert not {i for i in imported if inside(i, *backends) and not inside(i, own or "-")}
    if inside(me, "store"):
        assert not {i for i in imported if inside(i, "resumable")}
    if inside(me, "resumable") and me != "artifactd.resumable.factory":
        kinds = ("resumable.filesystem", "resumable.memory", "resumable.s3")
        own = next((k for k in kinds if inside(me, k)), "-")
        assert not {i for i in imported if inside(i, *kinds) and not inside(i, own)}
    if inside(me, "web"):
        assert not {i for i in imported if inside(i, "cli", "server", "supervisor")}
    if not inside(me, "cli") and me != "artifactd.__main__":
        assert not {i for i in imported if inside(i, "cli")}
    if not inside(me, "cli", "supervisor"):
        assert not {i for i in imported if inside(i, "server", "supervisor")}


def test_the_layering_test_sees_imports() -> None:
    """Guards the checks above against parsing nothing."""
    assert "artifactd.store.base" in imports_of("web/files.py")
    assert "artifactd.errors" in imports_of("http/digests.py")
    assert "web/download/plan.py" in documented_files()
