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
