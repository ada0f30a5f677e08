"""A simulated drive: readiness on the virtual clock, identity and TapeAlert as sg3-utils print."""

from __future__ import annotations

from typing import TYPE_CHECKING

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.cost import Position
from archive_core_tape_ltfs.model import DriveIdentity, DriveState, DriveStatus, TapeAlerts
from archive_core_tape_ltfs.parse import mt, sg
from archive_core_tape_ltfs.sim import render

if TYPE_CHECKING:
    from archive_core_tape_ltfs.sim.library import SimLibrary
    from archive_core_tape_ltfs.sim.state import SimDrive, SimState


class SimTapeDrive:
    def __init__(self, library: SimLibrary, index: int) -> None:
        self._library = library
        self.index = index

    def __repr__(self) -> str:
        return f"<SimTapeDrive {self.index}>"

    def _status(self, state: SimState, drive: SimDrive) -> DriveStatus:
        if drive.ltfs is not None:
            # As the real drive: no tape node is opened while LTFS holds the drive.
            return DriveStatus(state=DriveState.READY)
        status = mt.parse_status(render.mt_status(state, drive))
        if status.state is DriveState.NOT_READY and drive.cartridge is not None and not drive.hung:
            cartridge = state.cartridges[drive.cartridge]
            timing = self._library.timing(drive)
            calibrating = drive.ready_at - state.clock > timing.profile.load_seconds + 1
            if calibrating and not cartridge.cleaning:
                return DriveStatus(state=DriveState.CALIBRATING)
            return DriveStatus(state=DriveState.LOADING)
        return status

    def status(self) -> DriveStatus:
        with self._library.step("drive-status") as state:
            return self._status(state, self._library.drive_state(state, self.index))

    def wait_ready(
        self, timeout: float | None = None, *, new_cartridge: bool = False
    ) -> DriveStatus:
        timeouts = self._library.timeouts
        if timeout is None:
            timeout = timeouts.ready_new_cartridge if new_cartridge else timeouts.ready
        with self._library.step("wait-ready") as state:
            drive = self._library.drive_state(state, self.index)
            status = self._status(state, drive)
            if status.state is DriveState.READY:
                return status
            if drive.cartridge is not None and not drive.hung and drive.threaded:
                wait = drive.ready_at - state.clock
                if wait <= timeout:
                    state.clock = max(state.clock, drive.ready_at)
                    return self._status(state, drive)
            state.clock += timeout
            now = self._status(state, drive).state
            raise errors.DriveNotReady(
                f"Drive {self.index} did not become ready within {timeout:.0f} s (it is "
                f"{now.value}). A new LTO-9 cartridge needs up to 2 hours on its first load; "
                f"otherwise unload it and check the drive.",
                drive=self.index,
            )

    def identity(self) -> DriveIdentity:
        with self._library.step("identity") as state:
            drive = self._library.drive_state(state, self.index)
            return sg.parse_inquiry(render.sg_inq(drive))

    def alerts(self) -> TapeAlerts:
        with self._library.step("alerts") as state:
            drive = self._library.drive_state(state, self.index)
            return sg.parse_tape_alerts(render.sg_logs_tape_alerts(drive))

    def eject(self) -> None:
        with self._library.step("eject") as state:
            drive = self._library.drive_state(state, self.index)
            if drive.ltfs is not None:
                raise errors.DriveHeldByLtfs(
                    f"Cannot eject drive {self.index}: LTFS holds it. Unmount the volume "
                    f"first; opening its tape device now could rewind the tape during an index "
                    f"write.",
                    drive=self.index,
                )
            if drive.cartridge is None or not drive.threaded:
                raise errors.DriveNotReady(
                    f"Cannot eject drive {self.index}: no cartridge is threaded.",
                    drive=self.index,
                )
            timing = self._library.timing(drive)
            state.clock += timing.unload(Position(partition=drive.partition, block=drive.block))
            drive.threaded = False
            drive.partition, drive.block = 0, 0
