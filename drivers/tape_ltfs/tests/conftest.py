"""Fixtures of the tape tests: golden tool output, simulated libraries, the real port over them."""

from __future__ import annotations

from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str) -> str:
    return (GOLDEN / name).read_text(encoding="utf-8")


def decoded_by(tool: list[str], hex_text: str, tmp_path: Path) -> str:
    """What an installed sg3-utils tool prints for a response given as hex (`--in`)."""
    import subprocess

    response = tmp_path / "response.hex"
    response.write_text(hex_text)
    return subprocess.run(
        [*tool, f"--in={response}"], capture_output=True, text=True, timeout=30, check=True
    ).stdout


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


def real_over(sim_library):
    """The real backend over a simulated library: its tools are answered from the simulator's
    state behind their command lines, on the simulated host's mount root and work directory."""
    from archive_core_tape_ltfs.real.library import RealLibrary
    from archive_core_tape_ltfs.sim.tools import SimulatedTools, real_config

    tools = SimulatedTools(sim_library)
    real = RealLibrary(real_config(sim_library), runner=tools, clock=sim_library.clock, fs=tools)
    real.tools = tools
    return real


@pytest.fixture(params=["simulator", "real"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def open_library(backend):
    """Opens a simulated library from settings and gives its port on the test's backend: the
    simulator's own, or the real port over its tools. Either way `.sim` is the simulator (to
    inject the environment's faults) and `.settings` what it was opened with."""
    from archive_core_tape_ltfs.sim.library import SimLibrary

    def open_(settings):
        sim = SimLibrary.open(settings)
        library = sim if backend == "simulator" else real_over(sim)
        library.sim, library.settings = sim, settings
        return library

    return open_


@pytest.fixture
def library(open_library, sim_settings):
    """Each contract test runs on the simulator's port and on the real port over its tools."""
    return open_library(sim_settings)
