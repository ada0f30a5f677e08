"""The filesys driver passes the conformance kit every driver must pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from archive_core_filesys.driver import FilesysDriver

from archive_core import transfer
from archive_core.driver import Capability
from archive_core.testing import DriverContract
from archive_core.transfer._sinks import FdSink


class TestFilesysConformance(DriverContract):
    @pytest.fixture
    def driver_class(self) -> type:
        return FilesysDriver

    @pytest.fixture
    def driver_settings(self, storage: Path) -> dict[str, Any]:
        return {"root": str(storage), "min_free_bytes": 0}

    @pytest.fixture
    def unreachable_settings(self, storage: Path) -> dict[str, Any]:
        # Valid when the target was configured, gone since (an unmounted share).
        gone = storage.parent / "unmounted"
        gone.mkdir()
        settings = {"root": str(gone), "min_free_bytes": 0}
        gone.rmdir()
        return settings

    @pytest.fixture
    def invalid_settings(self, storage: Path) -> list[tuple[dict[str, Any], str]]:
        return [
            ({"root": "relative/path"}, "root: must be an absolute path"),
            ({"root": str(storage), "layout": "by-mood"}, "layout: must be one of"),
            ({"root": str(storage), "parallel": 0}, "parallel: must be between 1 and 64"),
            ({"root": str(storage), "fsync": "yes"}, "fsync: expected true or false"),
        ]

    @pytest.fixture
    def expected_capabilities(self) -> frozenset[Capability]:
        return frozenset(
            {
                Capability.ARCHIVE,
                Capability.RESTORE,
                Capability.DELETE,
                Capability.VERIFY,
                Capability.BULK,
                Capability.MANIFEST,
            }
        )

    @pytest.fixture
    def write_seam(self) -> tuple[Any, str]:
        return (FdSink, "write")

    @pytest.fixture
    def read_seam(self) -> tuple[Any, str]:
        return (transfer.RegularFile, "readinto")


class TestFilesysItemLayoutConformance(TestFilesysConformance):
    """The same contract with copies under per-item folders (hostile item ids matter here)."""

    @pytest.fixture
    def driver_settings(self, storage: Path) -> dict[str, Any]:
        return {"root": str(storage), "min_free_bytes": 0, "layout": "item"}
