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


def real_over(sim_library, tmp_path):
    """The real backend, its tools answered by the simulated library behind command lines."""
    from archive_core_tape_ltfs.config import DriveBinding, LibraryConfig, Timeouts
    from archive_core_tape_ltfs.real.library import RealLibrary
    from archive_core_tape_ltfs.sim.tools import SimulatedTools, nst_node, sg_node

    tools = SimulatedTools(sim_library)
    state = sim_library.snapshot()
    config = LibraryConfig(
        backend="real",
        changer=state.changer_name,
        drives=tuple(
            DriveBinding(index=d.index, serial=d.serial, sg=sg_node(d.index), nst=nst_node(d.index))
            for d in state.drives
        ),
        mount_root=tmp_path / "mnt",
        work_directory=tmp_path / "work",
        timeouts=Timeouts(poll_interval=60.0),
    )
    real = RealLibrary(config, runner=tools, clock=sim_library.clock, fs=tools)
    real.tools = tools
    return real


@pytest.fixture(params=["simulator", "real"])
def library(request, sim, tmp_path):
    """Each contract test runs on the simulator's port and on the real port over its tools."""
    if request.param == "simulator":
        sim.sim = sim
        return sim
    real = real_over(sim, tmp_path)
    real.sim = sim
    return real
