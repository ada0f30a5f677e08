"""The core's modules form layers, and imports only run downwards (or within a layer).

Read from the source with `ast`, imports inside functions included: a lazy import is still a
dependency. A module that needs something from a higher layer is in the wrong place, or the
thing it needs is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "archive_core"

#: Lowest first. A package (transfer/, testing/, scaffold/) counts as one module here.
CORE_LAYERS: list[set[str]] = [
    {"errors", "model", "naming", "secret", "workers"},  # values and identities
    {"driver", "externalid", "transfer", "catalog", "policies"},  # contract, bytes, state
    {"hooks", "registry", "objectstore"},  # plugins found and observed; a driver base
    {"site"},  # one configuration at run time
    {"jobs"},  # one operation of one policy
    {"portal"},  # the face Portal sees
    {"cli", "demo", "scaffold", "testing"},  # what people and vendors run
]


def _layer_of(module: str) -> int:
    for index, layer in enumerate(CORE_LAYERS):
        if module in layer:
            return index
    raise AssertionError(f"archive_core.{module} is in no layer of tests/test_layers.py")


def _core_modules() -> dict[str, list[Path]]:
    """Top-level core module name -> its source files (a package: all of them)."""
    modules: dict[str, list[Path]] = {}
    for path in sorted(CORE.rglob("*.py")):
        relative = path.relative_to(CORE)
        if relative == Path("__init__.py"):
            continue  # the public facade re-exports from below; it is no layer of its own
        modules.setdefault(relative.parts[0].removesuffix(".py"), []).append(path)
    return modules


def _imported_core_modules(path: Path) -> set[str]:
    """The top-level archive_core modules that `path` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "archive_core":
                names = [f"archive_core.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "archive_core" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_core_module_has_a_layer():
    for module in _core_modules():
        _layer_of(module)


@pytest.mark.parametrize("module", sorted(_core_modules()))
def test_core_imports_only_run_downwards(module):
    own = _layer_of(module)
    upward = []
    for path in _core_modules()[module]:
        for imported in sorted(_imported_core_modules(path) - {module}):
            if imported in _core_modules() and _layer_of(imported) > own:
                upward.append(f"{path.relative_to(CORE.parent)} imports archive_core.{imported}")
    assert not upward, "imports from a higher layer: " + "; ".join(upward)
