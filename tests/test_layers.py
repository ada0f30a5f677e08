"""The core's modules form layers, and imports only run downwards (or within a layer).

Read from the source with `ast`, imports inside functions included: a lazy import is still a
dependency. A module that needs something from a higher layer is in the wrong place, or the
thing it needs is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "archive_core"

#: Lowest first. A package (transfer/, testing/, scaffold/) counts as one module here.
CORE_LAYERS: list[set[str]] = [
    # values and identities; the manifest format
    {"errors", "model", "naming", "secret", "workers", "manifests"},
    # contract, bytes, state (the catalog, its faults and leases, its schema version and
    # migrations, the audit trail)
    {
        "driver",
        "externalid",
        "transfer",
        "catalog",
        "catalog_faults",
        "leases",
        "schema",
        "migrations",
        "policies",
        "audit",
        "configstore",
    },
    # plugins found and observed; a driver base; Prometheus metrics
    {"hooks", "registry", "objectstore", "metrics"},
    {"site"},  # one configuration at run time
    {"jobs"},  # one operation of one policy
    {"portal"},  # the face Portal sees
    # the site for a driver's operator commands; reading copies back within a budget; a
    # target's catalog entries rebuilt from its manifests; configuration versions validated
    # and saved
    {"operator", "scrub", "rebuild", "repair", "configedit"},
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


def test_every_core_module_has_a_layer():
    for module in _core_modules():
        _layer_of(module)


@pytest.mark.parametrize("module", sorted(_core_modules()))
def test_core_imports_only_run_downwards(module):
    own = _layer_of(module)
    upward = []
    for path in _core_modules()[module]:
        for imported in sorted(_package_imports(CORE, path) - {module}):
            if imported in _core_modules() and _layer_of(imported) > own:
                upward.append(f"{path.relative_to(CORE.parent)} imports archive_core.{imported}")
    assert not upward, "imports from a higher layer: " + "; ".join(upward)


# --- inside the packages ---------------------------------------------------------------------

#: Package directory -> its modules' layers, lowest first. Type-only imports count too: a
#: module that needs a higher one's type names the wrong thing (a Protocol below serves).
PACKAGE_LAYERS: dict[str, list[set[str]]] = {
    "archive_core/jobs": [
        {"report", "checks"},  # what a job is given and reports; the fixity checks
        {"operation"},  # what an operation supplies the loop, and what it sees of the job
        # the journal's side of a batch; where copies are; the purge interlock
        {"journal", "locate", "verified"},
        {"archive", "restore", "copies"},  # the operations
        {"runner"},  # the one loop
    ],
    "archive_core/transfer": [
        {"_buffers", "_flags"},
        {"_sinks", "_noreplace", "_unnamed", "durability", "directories", "paths", "sources"},
        {"partials", "hashing"},
        {"staging"},
        {"publish"},
        {"stager"},
    ],
    "archive_core/transfer/stager": [
        {"_plan"},
        {"_chunks"},
        {"_worker", "_threads"},
        {"_processes"},
        {"_stager"},
    ],
    "drivers/filesys/archive_core_filesys": [
        {"_root"},  # what a root is and what its file system is
        {"_copies"},  # the per-file work the stager runs
        {"driver"},  # the contract
    ],
    "drivers/tape_ltfs/archive_core_tape_ltfs": [
        {"errors", "model"},  # the port's values and typed errors
        {"port", "cost", "config"},  # its protocols, its public cost model, its settings
        {"parse", "runner", "retry", "moves"},  # the tools' text; running them; shared checks
        {"real", "sim"},  # the two backends (never importing each other: see below)
        {"factory"},  # the one place that knows both
        # operations the CLI and the driver share; the restore scheduler (it speaks the port,
        # never a backend: its own test)
        {"cleaning", "health", "reconcile", "restore"},
        {"cli", "plugin", "driver"},  # what operators run; the archive driver
    ],
    "drivers/tape_ltfs/archive_core_tape_ltfs/driver": [
        # the media store and its errors; copies; pools; reading sources ahead of the drive
        {"media", "placement", "pools", "wear", "feeding"},
        {"settings", "selection", "loader"},  # target settings; cartridge choice; mounting
        # one pool's copies written; copies read back as planned; a volume checked
        {"writing", "reading", "scanning"},
        {"archiving"},  # an archive batch over every pool of a policy
        {"tape"},  # the driver class
    ],
    "drivers/tape_ltfs/archive_core_tape_ltfs/restore": [
        {"request", "offline", "view", "turns"},  # what is asked; what the library holds
        {"plan", "ordering"},  # the plan's values; the order on one cartridge
        {"estimate"},  # the plan on the cost model
        {"bound", "planner"},  # the lower bound; the planner
        {"executor"},  # one plan run on a library
        {"batch"},  # plan, run, retry from the next copies
    ],
    "drivers/tape_ltfs/archive_core_tape_ltfs/sim": [
        # the rows of a virtual library; synthetic file content; sources slower than disk
        {"state", "content", "sources"},
        # store, callers, resources, timeline; faults; the tools' texts and the LTFS index XML
        {"engine", "faults", "render", "scsi", "index_xml"},
        {"mechanics"},  # what the hardware does beneath the port objects
        {"drive", "changer", "ltfs"},  # the port objects
        {"library"},  # the composition root
        {"host"},  # the simulated host: mount table, file-system calls, processes
        {"tools"},  # the real tools' command lines answered from a simulated library
    ],
}


def _package_imports(package: Path, path: Path) -> set[str]:
    """The sibling modules of `package` that `path` imports (a subpackage counts as one)."""
    parts = package.relative_to(ROOT).parts
    if parts[0] == "drivers":
        parts = parts[2:]  # a driver's distribution directory is its import root
    dotted = ".".join(parts)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith(dotted + "."):
                found.add(name[len(dotted) + 1 :].split(".")[0])
    return found


def _package_modules(package: Path) -> dict[str, list[Path]]:
    modules: dict[str, list[Path]] = {}
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if relative == Path("__init__.py"):
            continue
        modules.setdefault(relative.parts[0].removesuffix(".py"), []).append(path)
    return modules


@pytest.mark.parametrize("package", sorted(PACKAGE_LAYERS))
def test_package_imports_only_run_downwards(package):
    layers = PACKAGE_LAYERS[package]
    where = {module: index for index, layer in enumerate(layers) for module in layer}
    modules = _package_modules(ROOT / package)
    assert set(modules) == set(where), f"{package}: modules without a layer, or gone"
    upward = []
    for module, paths in modules.items():
        for path in paths:
            for imported in sorted(_package_imports(ROOT / package, path) - {module}):
                if imported in where and where[imported] > where[module]:
                    upward.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not upward, "imports from a higher layer: " + "; ".join(upward)


def test_the_tape_backends_never_import_each_other():
    package = ROOT / "drivers/tape_ltfs/archive_core_tape_ltfs"
    modules = _package_modules(package)
    crossing = [
        f"{path.relative_to(ROOT)} imports {other}"
        for backend, other in (("real", "sim"), ("sim", "real"))
        for path in modules[backend]
        if other in _package_imports(package, path)
    ]
    assert not crossing, "; ".join(crossing)


# --- what drivers may import -----------------------------------------------------------------


def _driver_sources() -> list[Path]:
    """The in-tree drivers' code as it ships (their tests may reach further)."""
    return sorted(
        path
        for package in (ROOT / "drivers").glob("*/archive_core_*")
        for path in package.rglob("*.py")
    )


def test_in_tree_drivers_import_only_the_public_surface():
    import archive_core

    public = set(archive_core.PUBLIC_MODULES)
    names = set(archive_core.__all__)
    internal = []
    for path in _driver_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
                bad = [m for m in modules if m.startswith("archive_core.") and m not in public]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "archive_core":
                    bad = [
                        f"archive_core.{a.name}"
                        for a in node.names
                        if a.name not in names and f"archive_core.{a.name}" not in public
                    ]
                elif node.module.startswith("archive_core."):
                    bad = [] if node.module in public else [node.module]
                else:
                    continue
            else:
                continue
            internal += [f"{path.relative_to(ROOT)}:{node.lineno} imports {b}" for b in bad]
    assert not internal, "drivers importing internal core modules: " + "; ".join(internal)


def test_every_public_name_and_module_imports():
    import importlib

    import archive_core

    for name in archive_core.__all__:
        assert getattr(archive_core, name) is not None, name
    for module in archive_core.PUBLIC_MODULES:
        importlib.import_module(module)
