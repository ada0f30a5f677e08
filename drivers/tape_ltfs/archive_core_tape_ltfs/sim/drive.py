"""A simulated drive: readiness and busy spells on its caller's clock, identity and TapeAlert."""

from __future__ import annotations

import attrs
from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.config import Timeouts
from archive_core_tape_ltfs.model import (
    MEDIA_TYPES,
    DriveIdentity,
    DriveState,
    DriveStatus,
    TapeAlerts,
)
from archive_core_tape_ltfs.parse import mt, sg
from archive_core_tape_ltfs.sim import mechanics, render
from archive_core_tape_ltfs.sim.engine import Caller, Engine, Step
from archive_core_tape_ltfs.sim.state import SimDrive

_PHASE_STATES = {
    "loading": DriveState.LOADING,
    "calibrating": DriveState.CALIBRATING,
    "cleaning": DriveState.CLEANING,
    "unloading": DriveState.UNLOADING,
}


def read_tape_alert_page(drive: SimDrive) -> str:
    """LOG SENSE page 0x2E as `sg_logs -p 0x2e` prints it. Reading it clears the flags, as on
    many drives (another reader, LTFS or a poller, steals them); the conditions behind them
    stay and are reported again (a drive that needs cleaning says so at the next load)."""
    text = render.sg_logs_tape_alerts(drive)
    drive.alerts = ()
    return text


def read_tape_alert_response_page(drive: SimDrive) -> str:
    """LOG SENSE page 0x12 (TapeAlert Response) as `sg_logs -p 0x12` prints it: clears nothing."""
    return render.sg_logs_tape_alert_response(drive)


def drive_status(step: Step, drive: SimDrive) -> DriveStatus:
    """What the drive reports at the caller's time (busy while another caller's work runs)."""
    now = step.now
    if drive.dead:
        return DriveStatus(
            state=DriveState.OUT_OF_SERVICE,
            detail=f"Drive {drive.index} is out of service.",
        )
    cartridge = step.state.cartridges.get(drive.cartridge) if drive.cartridge else None
    media = None
    if cartridge is not None and drive.threaded and not cartridge.cleaning:
        media = MEDIA_TYPES.get(cartridge.media_code)
    phase = mechanics.phase_at(drive, now)
    if phase is not None:
        return DriveStatus(
            state=_PHASE_STATES[phase.state], seconds_left=phase.end - now, media=media
        )
    if drive.ltfs is not None:
        # As the real drive: no tape node is opened while LTFS holds the drive.
        return DriveStatus(state=DriveState.READY, media=media)
    status = mt.parse_status(render.mt_status(step.state, drive, now))
    if status.state is DriveState.NOT_READY and cartridge is not None and not drive.hung:
        return DriveStatus(state=DriveState.LOADING, seconds_left=drive.ready_at - now)
    return status if media is None else attrs.evolve(status, media=media)


class SimTapeDrive:
    def __init__(self, engine: Engine, caller: Caller, timeouts: Timeouts, index: int) -> None:
        self._engine = engine
        self._caller = caller
        self._timeouts = timeouts
        self.index = index

    def __repr__(self) -> str:
        return f"<SimTapeDrive {self.index}>"

    def _step(self, name: str):
        return self._engine.step(self._caller, name)

    def status(self) -> DriveStatus:
        with self._step("drive-status") as step:
            return drive_status(step, mechanics.drive_row(step, self.index))

    def wait_ready(
        self, timeout: float | None = None, *, new_cartridge: bool = False
    ) -> DriveStatus:
        timeouts = self._timeouts
        if timeout is None:
            timeout = timeouts.ready_new_cartridge if new_cartridge else timeouts.ready
        with self._step("wait-ready") as step:
            drive = mechanics.drive_row(step, self.index)
            mechanics.in_service(drive, "wait for")
            status = drive_status(step, drive)
            if status.state is DriveState.READY:
                return status
            loading = drive.cartridge is not None and not drive.hung and drive.threaded
            if loading and drive.ready_at - step.now <= timeout:
                step.wait_until(drive.ready_at)
                return drive_status(step, drive)
            step.caller.now += timeout
            now = drive_status(step, drive).state
            raise errors.DriveNotReady(
                f"Drive {self.index} did not become ready within {timeout:.0f} s (it is "
                f"{now.value}). A new LTO-9 cartridge needs up to 2 hours on its first load; "
                f"otherwise unload it and check the drive.",
                drive=self.index,
            )

    def identity(self) -> DriveIdentity:
        with self._step("identity") as step:
            drive = mechanics.drive_row(step, self.index)
            mechanics.in_service(drive, "identify")
            return sg.parse_inquiry(render.sg_inq(drive))

    def alerts(self) -> TapeAlerts:
        # LOG SENSE page 0x12 (TapeAlert Response): reading it clears nothing.
        with self._step("alerts") as step:
            drive = mechanics.drive_row(step, self.index)
            mechanics.in_service(drive, "read the TapeAlert flags of")
            return TapeAlerts(flags=frozenset(drive.alerts))

    def eject(self) -> None:
        with self._step("eject") as step:
            drive = mechanics.drive_row(step, self.index)
            mechanics.in_service(drive, "eject")
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
            mechanics.unthread(step, drive, "eject the cartridge from")
