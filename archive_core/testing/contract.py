"""The conformance kit as pytest tests: a mixin class a driver's test module subclasses.

    from archive_core.testing import DriverContract
    from acme_archive.driver import AcmeDriver

    class TestAcmeDriver(DriverContract):
        @pytest.fixture
        def driver_class(self):
            return AcmeDriver

        @pytest.fixture
        def driver_settings(self, storage):
            return {"root": str(storage)}

Every check of `archive_core.testing.checks` becomes a test named `test_<check>`. Tests the
driver's capabilities rule out are skipped with the reason; `known_failures` maps a test's
name to why it fails, and that test is then expected to fail (strictly: once it passes, the
entry must go).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from archive_core.driver import Capability
from archive_core.testing.checks import CHECKS, Check, default_read_seam
from archive_core.testing.harness import DriverUnderTest, Harness, MiB, local_directory


def _test_for(check: Check, known: str | None = None) -> Any:
    def test(self: DriverContract, kit: Harness) -> None:
        reason = check.skip_reason(kit)
        if reason is not None:
            pytest.skip(reason)
        check.function(kit)

    test.__name__ = f"test_{check.name}"
    test.__qualname__ = f"DriverContract.test_{check.name}"
    test.__doc__ = check.doc
    if known is not None:
        test = pytest.mark.xfail(reason=known, strict=True)(test)
    return test


class DriverContract:
    """Subclass in a driver's test module; override `driver_class` and `driver_settings`."""

    #: Test name (`test_<check>` or `<check>`) -> why this driver fails it.
    known_failures: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        by_name = {c.name: c for c in CHECKS}
        for name, reason in cls.known_failures.items():
            check = by_name.get(name.removeprefix("test_"))
            if check is None:
                raise TypeError(
                    f"{cls.__name__}.known_failures names {name!r}, which is not a test of the "
                    f"conformance kit (its tests: {', '.join('test_' + c for c in by_name)})"
                )
            setattr(cls, f"test_{check.name}", _test_for(check, reason))

    # --- fixtures the author overrides -------------------------------------------------------

    @pytest.fixture
    def driver_class(self) -> type:
        """The driver class under test."""
        pytest.fail("override the driver_class fixture: return your driver class")

    @pytest.fixture
    def driver_settings(self, storage: Path) -> Mapping[str, Any]:
        """Valid settings, as a target's `settings = {...}` in the site config."""
        pytest.fail("override the driver_settings fixture: return valid settings for storage")

    @pytest.fixture
    def storage(self, kit_base: Path) -> Path:
        """Where the driver keeps copies: by default an empty local directory in the kit's area.

        Override to start a server, make a bucket, and so on (yield it; clean up after).
        """
        path = kit_base / "level-1" / "level-2" / "storage"
        path.mkdir(parents=True)
        return path

    # --- fixtures the author may override ----------------------------------------------------

    @pytest.fixture
    def storage_path(self, storage: Any) -> Path | None:
        """The local directory the driver writes copies to, if any (for the escape checks).

        By default `storage` when it is a real local directory; a bucket name is not one,
        even where the current directory holds a folder of that name.
        """
        return local_directory(storage)

    @pytest.fixture
    def unreachable_settings(self, storage: Any) -> Mapping[str, Any] | None:
        """Settings that validate but whose storage does not answer; None skips that check."""
        return None

    @pytest.fixture
    def invalid_settings(self, storage: Any) -> Sequence[tuple[Mapping[str, Any], str]]:
        """(settings, text the refusal must contain) pairs the Config must refuse."""
        return ()

    @pytest.fixture
    def expected_capabilities(self) -> frozenset[Capability] | None:
        """The exact capabilities the driver must declare; None: not checked."""
        return None

    @pytest.fixture
    def max_file_size(self) -> int:
        """The largest (sparse) file the kit archives."""
        return 4 * MiB

    @pytest.fixture
    def write_seam(self) -> tuple[Any, str] | None:
        """(object, attribute) of what the driver calls to write a copy's bytes; None skips."""
        return None

    @pytest.fixture
    def read_seam(self, driver_class: type) -> tuple[Any, str] | None:
        """(object, attribute) of what the driver calls to read a source's bytes; None skips.

        Known for ObjectStoreDriver subclasses; others name theirs.
        """
        return default_read_seam(driver_class)

    @pytest.fixture
    def chunk_sizes(self) -> Sequence[int]:
        """Part or chunk sizes the driver moves bytes in; files at each boundary round-trip."""
        return ()

    @pytest.fixture
    def memory_per_transfer(self) -> int | None:
        """The most memory one transfer may hold, in bytes; None skips the memory check."""
        return None

    @pytest.fixture
    def examples(self) -> int:
        """Examples per property-based check."""
        return 10

    # --- the kit's own fixtures --------------------------------------------------------------

    @pytest.fixture
    def kit_base(self, tmp_path: Path) -> Path:
        return tmp_path / "kit"

    @pytest.fixture
    def kit(
        self,
        kit_base: Path,
        driver_class: type,
        driver_settings: Mapping[str, Any],
        storage_path: Path | None,
        unreachable_settings: Mapping[str, Any] | None,
        invalid_settings: Sequence[tuple[Mapping[str, Any], str]],
        expected_capabilities: frozenset[Capability] | None,
        max_file_size: int,
        write_seam: tuple[Any, str] | None,
        read_seam: tuple[Any, str] | None,
        chunk_sizes: Sequence[int],
        memory_per_transfer: int | None,
        examples: int,
    ) -> Iterator[Harness]:
        subject = DriverUnderTest(
            driver_class=driver_class,
            settings=driver_settings,
            storage=storage_path,
            unreachable_settings=unreachable_settings,
            invalid_settings=tuple(invalid_settings),
            expected_capabilities=expected_capabilities,
            max_file_size=max_file_size,
            write_seam=write_seam,
            read_seam=read_seam,
            chunk_sizes=tuple(chunk_sizes),
            memory_per_transfer=memory_per_transfer,
            examples=examples,
        )
        kit_base.mkdir(parents=True, exist_ok=True)
        harness = Harness(subject, kit_base)
        try:
            yield harness
        finally:
            harness.close()


for _check in CHECKS:
    setattr(DriverContract, f"test_{_check.name}", _test_for(_check))
del _check

__all__ = ["DriverContract"]
