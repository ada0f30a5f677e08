"""The tape_ltfs driver passes the conformance kit on a simulated library."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from archive_core_tape_ltfs.driver import TapeLtfsDriver

from archive_core.driver import Capability
from archive_core.testing import DriverContract
from archive_core.transfer import RegularFile

CAPACITY = 256 * 2**20


def simulated_target(state_dir: Path, **extra: Any) -> dict[str, Any]:
    """Settings of a target on a small simulated library: one pool, ten blank cartridges."""
    return {
        "library": {
            "backend": "simulator",
            "simulator": {
                "state_dir": str(state_dir),
                "slots": 12,
                "import_export": 2,
                "drives": 2,
                "capacity_bytes": CAPACITY,
                "cartridges": [
                    {"barcode": f"A{n:05d}L9", "slot": n + 1, "new": False} for n in range(10)
                ],
            },
        },
        "pools": {
            "main": {
                "media": "L9",
                "barcodes": ["A00000L9-A00099L9"],
                "scratch": ["A00000L9-A00099L9"],
            }
        },
        "headroom_bytes": 0,
        **extra,
    }


class TestTapeLtfsConformance(DriverContract):
    known_failures = {
        "test_two_sites_archiving_the_same_files_at_once_agree": (
            "each site keeps its own media store; while one site has its cartridge mounted "
            "the other does not wait for it but takes the next cartridge of the pool, so the "
            "same file gets a copy on each (a second site that comes later finds the first's "
            "copies and keeps them)"
        ),
    }

    @pytest.fixture
    def driver_class(self) -> type:
        return TapeLtfsDriver

    @pytest.fixture
    def storage(self, kit_base: Path) -> Path:
        path = kit_base / "library"
        path.mkdir(parents=True)
        return path

    @pytest.fixture
    def driver_settings(self, storage: Path) -> dict[str, Any]:
        return simulated_target(storage)

    @pytest.fixture
    def unreachable_settings(self, storage: Path) -> dict[str, Any]:
        return {
            **simulated_target(storage),
            "library": {
                "backend": "real",
                "changer": str(storage / "no-such-changer"),
                "drives": [{"index": 0, "serial": "NOSUCHDRIVE"}],
                "timeouts": {"status": 2.0},
            },
        }

    @pytest.fixture
    def read_seam(self) -> tuple[Any, str]:
        return (RegularFile, "readinto_at")

    @pytest.fixture
    def expected_capabilities(self) -> frozenset[Capability]:
        return TapeLtfsDriver.capabilities

    @pytest.fixture
    def invalid_settings(self, storage: Path) -> list[tuple[dict[str, Any], str]]:
        good = simulated_target(storage)
        return [
            (
                {**good, "pools": {"main": {"media": "L9", "barcodes": ["W00000LZ-W00009LZ"]}}},
                "pools.main.barcodes",
            ),
            ({**good, "pools": {"main": {"media": "Q7", "barcodes": ["A00000L9"]}}}, "Q7"),
        ]


class TestTapeLtfsConformanceOnTheRealPort(TestTapeLtfsConformance):
    """The same checks with the driver on the real adapter, over the simulated tools."""

    @pytest.fixture(autouse=True)
    def real_port(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from archive_core_tape_ltfs.factory import open_library

        from .conftest import real_over

        def port(driver: TapeLtfsDriver):
            if driver._library is None:
                library = open_library(driver.config.library)
                simulated = driver.config.library.backend == "simulator"
                driver._library = real_over(library) if simulated else library
            return driver._library

        monkeypatch.setattr(TapeLtfsDriver, "_port", port)
