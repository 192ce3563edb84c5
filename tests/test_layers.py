"""Layering is a rule, so a test enforces it (STYLE.md item 3, trio's test_exports idea).

* ``cartfs.core`` imports no adapter code and none of the adapters' libraries (pyfuse3, trio,
  apsw, h11) — the core stays pure and usable from any adapter.
* An adapter (``cartfs.fuse``, ``cartfs.vfs``, ``cartfs.s3``, ``cartfs.cli``) reaches the core
  only through its public modules, never pager/btree/alloc/cache/... directly.

Imports are read with ``ast`` (including ones inside functions and ``TYPE_CHECKING`` blocks),
so nothing is imported to check them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cartfs"
ADAPTERS = ("cartfs.fuse", "cartfs.vfs", "cartfs.s3", "cartfs.cli")
CORE_FORBIDDEN_LIBS = ("pyfuse3", "trio", "apsw", "h11")
CORE_PUBLIC = frozenset({
    "cartfs.core", "cartfs.core.archive", "cartfs.core.errors", "cartfs.core.catalog",
    "cartfs.core.namespace", "cartfs.core.fsck", "cartfs.core.keys", "cartfs.core.paths",
    "cartfs.core.iam", "cartfs.core.format",
    "cartfs.core.iamstore",  # the archive's IAM users/keys/policies: a facade like Archive
})
# Never public, whatever the list above says: the engine's moving parts.
CORE_INTERNAL = frozenset(f"cartfs.core.{name}" for name in (
    "pager", "btree", "alloc", "cache", "filedata", "device", "codec", "xattrs",
))
assert not CORE_PUBLIC & CORE_INTERNAL


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


Source = tuple[Path, str]  # a file and the module name it has in the package


def imported_modules(source: Source) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file; ``from x import y`` yields
    both ``x`` and ``x.y`` (y may be a submodule)."""
    path, me = source
    tree = ast.parse(path.read_text(), filename=str(path))
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def python_files(package: str) -> list[Source]:
    root = PACKAGE.parent.joinpath(*package.split("."))
    files = sorted(root.rglob("*.py")) if root.is_dir() else []
    return [(path, module_name(path)) for path in files]


def core_violations(files: list[Source]) -> list[str]:
    bad = []
    for source in files:
        for line, name in imported_modules(source):
            if any(within(name, lib) for lib in CORE_FORBIDDEN_LIBS) or any(
                    within(name, adapter) for adapter in ADAPTERS):
                bad.append(f"{source[1]}:{line} imports {name}")
    return bad


def public_core_module(name: str) -> bool:
    """Is this (possibly ``from module import symbol``) name allowed to an adapter?"""
    if any(within(name, internal) for internal in CORE_INTERNAL):
        return False
    if name in CORE_PUBLIC or within(name, "cartfs.core.iam"):
        return True
    parent = name.rpartition(".")[0]
    return parent in CORE_PUBLIC and parent != "cartfs.core"


def adapter_violations(files: list[Source]) -> list[str]:
    bad = []
    for source in files:
        for line, name in imported_modules(source):
            if not within(name, "cartfs.core") or public_core_module(name):
                continue
            # ``from cartfs.core import Archive`` names a symbol, not a module: allowed.
            parent = name.rpartition(".")[0]
            if parent == "cartfs.core" and not (PACKAGE / "core" /
                                                f"{name.rpartition('.')[2]}.py").exists():
                continue
            bad.append(f"{source[1]}:{line} imports {name}")
    return bad


def test_core_imports_no_adapter_or_adapter_library() -> None:
    files = python_files("cartfs.core")
    assert len(files) > 10, "the core package was not found"
    assert core_violations(files) == []


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_adapters_use_only_the_public_core(adapter: str) -> None:
    assert adapter_violations(python_files(adapter)) == []


def test_the_checker_catches_violations(tmp_path: Path) -> None:
    """The rules above would pass vacuously if the import parser saw nothing. The probes
    live in tmp_path under the module names they pretend to have."""
    probe = tmp_path / "probe_core.py"
    probe.write_text("import trio\nfrom ..fuse import ops\n"
                     "def f():\n    from cartfs.s3 import server\n")
    adapter_probe = tmp_path / "probe_cli.py"
    adapter_probe.write_text("from cartfs.core.pager import Pager\n"
                             "from ..core import btree\nfrom cartfs.core import Archive\n"
                             "from cartfs.core.errors import CartError\n")
    core_bad = core_violations([(probe, "cartfs.core.probe")])
    assert len(core_bad) >= 3 and any("trio" in v for v in core_bad)
    assert any("cartfs.fuse" in v for v in core_bad)
    assert any("cartfs.s3" in v for v in core_bad)
    adapter_bad = adapter_violations([(adapter_probe, "cartfs.cli.probe")])
    assert any("cartfs.core.pager" in v for v in adapter_bad)
    assert any("cartfs.core.btree" in v for v in adapter_bad)
    assert not any("Archive" in v or "errors" in v for v in adapter_bad)
