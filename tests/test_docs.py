"""The driver guide documents every capability, hook, kit check and kit fixture there is."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from archive_core.driver import Capability
from archive_core.hooks import HookSpecs
from archive_core.testing import CHECKS
from archive_core.testing.contract import DriverContract

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "writing-drivers.md"


def section(title: str) -> str:
    text = GUIDE.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/writing-drivers.md has no section '## {title}'"
    return match.group(1)


def table_names(text: str) -> set[str]:
    """The first-column names of every markdown table row: `name` or `name(args)`."""
    return set(re.findall(r"^\| `([a-z0-9_]+)[`(]", text, re.M))


def test_every_capability_is_documented() -> None:
    documented = table_names(section("Capabilities"))
    missing = {c.value for c in Capability} - documented
    assert not missing, f"capabilities missing from the guide's table: {sorted(missing)}"


def test_every_hook_spec_is_documented() -> None:
    specs = {name for name, _ in inspect.getmembers(HookSpecs, inspect.isfunction)}
    missing = specs - table_names(section("Hooks"))
    assert not missing, f"hook specs missing from the guide's table: {sorted(missing)}"


def test_every_kit_check_is_documented() -> None:
    missing = {c.name for c in CHECKS} - table_names(section("The conformance kit"))
    assert not missing, f"kit checks missing from the guide: {sorted(missing)}"


def test_every_kit_fixture_an_author_may_override_is_documented() -> None:
    fixtures = {
        name
        for name, value in vars(DriverContract).items()
        if hasattr(value, "_fixture_function_marker") or "fixture" in type(value).__name__.lower()
    } - {"kit", "kit_base"}
    assert fixtures, "no fixtures found on DriverContract (pytest changed how it marks them?)"
    missing = fixtures - table_names(section("The conformance kit"))
    assert not missing, f"kit fixtures missing from the guide: {sorted(missing)}"


def test_the_guide_states_the_sizes_and_bounds_the_kit_checks_with() -> None:
    from archive_core.testing import checks, limits

    text = " ".join(section("The conformance kit").split())  # as read, not as wrapped
    for size in (
        checks.FAILING_WRITE_FILE_SIZE,
        checks.TRUNCATED_FILE_SIZE,
        checks.TRUNCATED_AFTER,
        checks.TRANSIENT_FILE_SIZE,
    ):
        assert f"{size:,} bytes" in text or f"after {size:,}" in text, size
    allowance = limits.CORE_BUFFERS >> 20
    memory = f"{limits.LARGE_FILE_FACTOR} times (`memory_per_transfer` + {allowance} MiB)"
    assert memory in text
    assert f"({limits.STALL_TIMEOUT_SECONDS:g} s here)" in text
    assert f"within {checks.READY_TIMEOUT_SECONDS:g} s (Portal's default" in text


def test_the_guide_tells_which_error_to_raise_for_which_remote_failure() -> None:
    from archive_core import errors

    text = " ".join(section("Which error to raise").split())
    for name in ("TransferFailed", "ArchiveCoreError", "CopyNotFound", "FixityMismatch"):
        assert hasattr(errors, name) and f"`{name}" in text, name
    assert "`TransferFailed(message, retryable=True)`, or let the `OSError` out" in text
    assert "the core puts file and target in front" in text


def test_every_method_an_object_store_driver_may_write_or_use_is_documented() -> None:
    from archive_core.objectstore import ObjectStoreDriver

    text = " ".join(section("Two ways to write the operations").split())
    for name in ("put", "get", "remove", "probe", "size_of", "remove_leftovers", "key_for"):
        assert callable(getattr(ObjectStoreDriver, name))
        assert f"def {name}(self" in text, name
    assert isinstance(ObjectStoreDriver.worker_id, property) and "`self.worker_id`" in text
    assert "**The stream `put()` gets cannot seek.**" in text


def test_the_guide_lists_everything_a_driver_may_import() -> None:
    import archive_core
    from archive_core import transfer
    from archive_core.transfer import stager

    text = GUIDE.read_text(encoding="utf-8")
    names = [n for n in archive_core.__all__ if n != "PUBLIC_MODULES"]
    names += [*archive_core.PUBLIC_MODULES, *transfer.__all__, *stager.__all__]
    missing = [name for name in names if f"`{name}" not in text]
    assert not missing, f"not in docs/writing-drivers.md: {missing}"


def test_the_guide_documents_every_lease_call_and_the_timings_it_promises() -> None:
    from archive_core import leases

    text = " ".join(section("Leases").split())
    calls = {n for n in vars(leases.Leases) if not n.startswith("_")}
    assert calls == {"acquire", "renew", "release", "hold", "current", "waiting", "break_dead"}
    missing = [n for n in calls if f"`{n}(" not in text]
    assert not missing, f"lease calls missing from the guide: {missing}"
    for name in ("check()", "lost", "lease", "taken_over_from", "LeaseLost", "LeaseTimeout"):
        assert f"`{name}" in text, name
    assert f"asking every {leases.POLL_SECONDS:g} s" in text
    assert f"loses it {leases.WAITER_TTL_SECONDS:g} s after its last ask" in text
    assert "(default `ttl / 3`)" in text
