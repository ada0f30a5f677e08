"""The conformance kit: the contract every archive-core driver proves, ours or a vendor's.

- `DriverContract`: pytest mixin; subclass it in a driver's test module (needs pytest).
- `check_driver(factory, config, **options)`: the same checks without pytest; a report.
  Most checks go through the Portal face, as Portal calls; those of `direct` and `limits`
  call the driver itself, where the core's repairs cannot hide a fault.
- `faults`: wrappers that make a driver's I/O seam fail, cut short, or reset.
- `strategies`: hypothesis strategies for awkward FileSets (needs hypothesis).
- `MemoryDriver`, `MinimalDriver`, `create_bucket`: the reference drivers.
- `FileSet`, `Harness`, `DriverUnderTest`: the pieces, for tests of one's own.

Install with `pip install "archive-core[testing]"` for pytest and hypothesis. Importing this
package imports neither until `DriverContract` or `strategies` is used.
"""

from __future__ import annotations

from typing import Any

# Imported for their checks: registered after those through the Portal face, so CHECKS (and
# every report) lists the checks in one order wherever the kit is entered.
from archive_core.testing import direct, limits  # noqa: F401
from archive_core.testing.checks import (
    CHECKS,
    Check,
    CheckResult,
    ConformanceReport,
    ContractViolation,
    check_driver,
)
from archive_core.testing.fileset import FileSet
from archive_core.testing.harness import KIT_POLICY, KIT_TARGET, DriverUnderTest, Harness
from archive_core.testing.memory import MemoryDriver, MinimalDriver, bucket_contents, create_bucket


def __getattr__(name: str) -> Any:
    # pytest and hypothesis only when asked for: check_driver runs without them.
    if name == "DriverContract":
        from archive_core.testing.contract import DriverContract

        return DriverContract
    if name in ("strategies", "faults"):
        import importlib

        return importlib.import_module(f"archive_core.testing.{name}")
    raise AttributeError(f"module 'archive_core.testing' has no attribute {name!r}")


__all__ = [
    "CHECKS",
    "KIT_POLICY",
    "KIT_TARGET",
    "Check",
    "CheckResult",
    "ConformanceReport",
    "ContractViolation",
    "DriverContract",
    "DriverUnderTest",
    "FileSet",
    "Harness",
    "MemoryDriver",
    "MinimalDriver",
    "bucket_contents",
    "check_driver",
    "create_bucket",
    "faults",
    "strategies",
]
