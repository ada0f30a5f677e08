"""Fixtures of the tape tests: golden tool output, simulated libraries, the real port over them."""

from __future__ import annotations

from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str) -> str:
    return (GOLDEN / name).read_text(encoding="utf-8")


@pytest.fixture
def sim_settings(tmp_path):
    from archive_core_tape_ltfs.config import SimulatedCartridge, SimulatorSettings

    return SimulatorSettings(
        state_dir=tmp_path / "library",
        slots=10,
        import_export=2,
        drives=2,
        capacity_bytes=64 * 2**20,
        cartridges=(
            SimulatedCartridge(barcode="AAA001L9", slot=1),
            SimulatedCartridge(barcode="AAA002L9", slot=2),
            SimulatedCartridge(barcode="AAA003L9", slot=3, formatted=True, new=False),
            SimulatedCartridge(barcode="CLN001CU", slot=10, uses=2),
        ),
    )


@pytest.fixture
def sim(sim_settings):
    from archive_core_tape_ltfs.sim.library import SimLibrary

    return SimLibrary.open(sim_settings)
