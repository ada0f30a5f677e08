"""The restore scheduler speaks the port only: it never imports a backend."""

from __future__ import annotations

import ast
from pathlib import Path

RESTORE = Path(__file__).resolve().parent.parent / "archive_core_tape_ltfs" / "restore"
BACKENDS = ("archive_core_tape_ltfs.sim", "archive_core_tape_ltfs.real")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_restore_package_never_imports_the_simulator_or_the_real_backend():
    crossing = [
        f"{path.name} imports {name}"
        for path in sorted(RESTORE.glob("*.py"))
        for name in sorted(_imports(path))
        if name.startswith(BACKENDS) or name in ("archive_core_tape_ltfs.factory",)
    ]
    assert not crossing, "; ".join(crossing)
