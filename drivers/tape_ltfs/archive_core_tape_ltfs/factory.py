"""Opening the library a config describes: the one place that knows both backends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from archive_core_tape_ltfs.config import LibraryConfig

if TYPE_CHECKING:
    from archive_core_tape_ltfs.port import Library
    from archive_core_tape_ltfs.runner import Runner


def open_library(config: LibraryConfig, *, runner: Runner | None = None) -> Library:
    """The Library the config describes: the real tools, or the simulator at its state_dir."""
    if config.backend == "simulator":
        from archive_core_tape_ltfs.sim.library import SimLibrary

        assert config.simulator is not None
        return SimLibrary.open(config.simulator)
    from archive_core_tape_ltfs.real.library import RealLibrary

    return RealLibrary(config, runner=runner)
