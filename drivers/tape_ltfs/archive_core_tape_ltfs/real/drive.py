"""A drive over mt-st (non-rewinding node only) and sg3-utils: identity, TapeAlert, the sense
data of TEST UNIT READY, the DT device activity and the cartridge memory."""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.config import DriveBinding, Timeouts
from archive_core_tape_ltfs.model import (
    MEDIA_TYPES,
    DriveIdentity,
    DriveState,
    DriveStatus,
    MediaType,
    TapeAlerts,
    media_type_for,
    media_type_of,
)
from archive_core_tape_ltfs.parse import mam, mt, sg, turs
from archive_core_tape_ltfs.port import Clock
from archive_core_tape_ltfs.runner import Command, CommandResult, Runner

logger = logging.getLogger(__name__)


class ScsiDrive:
    """One drive bay's drive. While LTFS holds it, the tape node is never opened: closing it
    (or a rewind) during an index write corrupts the tape; only SCSI generic queries run."""

    def __init__(
        self,
        *,
        binding: DriveBinding,
        sg_device: Callable[[], str],
        runner: Runner,
        clock: Clock,
        timeouts: Timeouts,
        held: Callable[[int], str | None],
        barcode_of: Callable[[int], str | None] = lambda _index: None,
    ) -> None:
        self.index = binding.index
        self._barcode_of = barcode_of
        self._binding = binding
        self._sg_device = sg_device
        self._runner = runner
        self._clock = clock
        self._timeouts = timeouts
        self._held = held

    def __repr__(self) -> str:
        return f"<ScsiDrive {self.index} serial={self._binding.serial}>"

    def _nst(self, what: str) -> str:
        if holder := self._held(self.index):
            raise errors.DriveHeldByLtfs(
                f"Cannot {what} drive {self.index}: {holder}. Unmount the volume first; "
                f"opening its tape device now could rewind the tape during an index write.",
                drive=self.index,
                device=self._binding.nst,
            )
        if not self._binding.nst:
            raise errors.ToolFailed(
                f"Cannot {what} drive {self.index}: its non-rewinding tape node (nst) is not "
                f"configured.",
                drive=self.index,
            )
        return self._binding.nst

    def _sg(self, *args: str) -> CommandResult:
        """An sg3-utils query on the drive's SCSI generic node (harmless while LTFS holds it)."""
        command = Command(argv=(*args, self._sg_device()), timeout=self._timeouts.status)
        return self._runner.run(command)

    def _out_of_service(self, what: str, detail: str) -> errors.DriveError:
        return errors.DriveError(
            f"Cannot {what} drive {self.index}: the drive is out of service ({detail}). Have it "
            f"repaired or replaced.",
            drive=self.index,
            device=self._binding.nst,
            retryable=False,
        )

    def _refused(self, done: CommandResult, what: str) -> errors.TapeError | None:
        """The error for an sg query the drive refused because it is out of service: its sense
        data says so (sg3-utils prints it the same way for every command)."""
        answer = turs.parse_turs(done.exit_code, done.stdout, done.stderr)
        if answer.sense_key and turs.state_of(answer) is DriveState.OUT_OF_SERVICE:
            return self._out_of_service(what, answer.detail)
        return None

    def status(self) -> DriveStatus:
        if self._held(self.index):
            # Only the SCSI generic node while LTFS holds the drive: its tape node could rewind.
            return self._by_sense(DriveStatus(state=DriveState.NOT_READY))
        device = self._nst("query")
        done = self._runner.run(
            Command(argv=("mt", "-f", device, "status"), timeout=self._timeouts.status)
        )
        if done.exit_code != 0:
            if "No medium found" not in done.stderr and "offline" not in done.stderr:
                raise mt.failure(done.stderr, device=device, drive=self.index, what="query")
            return self._by_sense(DriveStatus(state=DriveState.EMPTY))
        status = mt.parse_status(done.stdout)
        if status.state is DriveState.READY:
            return attrs.evolve(status, media=self._media(status.density_code))
        return self._by_sense(status)

    def _sensed(self, fallback: DriveState) -> DriveStatus:
        """The state the sense data of TEST UNIT READY tells (`fallback`, mt's reading of the
        status bits, when there is none) and, for a drive busy on its own, the DT device
        activity (page 0x11) that tells calibrating, cleaning and unloading apart."""
        done = self._sg("sg_turs", "-v")
        answer = turs.parse_turs(done.exit_code, done.stdout, done.stderr)
        if answer.ready:
            return DriveStatus(state=DriveState.READY)
        state = turs.state_of(answer) if answer.sense_key else fallback
        detail = answer.detail
        if state not in (DriveState.OUT_OF_SERVICE, DriveState.CLEANING):
            busy, activity = self._activity()
            state = busy or state
            if busy is not None:
                detail = f"{detail}; drive activity: {activity}" if detail else activity
        return DriveStatus(state=state, seconds_left=answer.seconds_left, detail=detail)

    def _by_sense(self, status: DriveStatus) -> DriveStatus:
        """`status` completed from the sense data; a READY drive with what it found loaded."""
        sensed = self._sensed(status.state)
        if sensed.state is DriveState.READY:
            return attrs.evolve(status, state=DriveState.READY, media=self._media(None))
        return attrs.evolve(
            status, state=sensed.state, seconds_left=sensed.seconds_left, detail=sensed.detail
        )

    def check_movable(self, what: str) -> None:
        """Refuse to move a cartridge into or out of this drive while the drive cannot take
        it: out of service (the cartridge would be stuck in it), or optimising a new
        cartridge (an LTO-9 media optimisation cannot be interrupted)."""
        sensed = self._sensed(DriveState.NOT_READY)
        if sensed.state is DriveState.OUT_OF_SERVICE:
            raise self._out_of_service(what, sensed.detail)
        if sensed.state is DriveState.CALIBRATING:
            barcode = self._barcode_of(self.index)
            left = (
                f"; {sensed.seconds_left / 60:.0f} more minutes"
                if sensed.seconds_left is not None
                else ""
            )
            raise errors.DriveBusy(
                f"Cannot {what} drive {self.index}: it is optimising new cartridge "
                f"{barcode or '(no barcode)'} (LTO-9 media optimisation), which cannot be "
                f"interrupted{left}. Wait until the drive is ready.",
                drive=self.index,
                barcode=barcode,
                device=self._binding.nst,
            )

    def _activity(self) -> tuple[DriveState | None, str]:
        done = self._sg("sg_logs", "-p", "0x11")
        return sg.parse_device_activity(done.stdout) if done.ok else (None, "")

    def cartridge_memory(self) -> mam.CartridgeMemory | None:
        """The loaded cartridge's MAM attributes; None when the drive cannot read them (no
        cartridge, an old drive, a MAM chip failure): callers fall back to the barcode."""
        done = self._sg("sg_read_attr")
        return mam.parse_attributes(done.stdout) if done.ok else None

    def worm(self, barcode: str | None) -> bool:
        """Whether the loaded cartridge is WORM: its MAM says, else its barcode's media id."""
        memory = self.cartridge_memory()
        if memory is not None and memory.worm is not None:
            return memory.worm
        labelled = media_type_for(barcode)
        return labelled is not None and labelled.worm

    def _media(self, density_code: int | None) -> MediaType | None:
        """What the drive found loaded: the generation from the density code (mt status, or the
        MAM's medium density code), WORM from the MAM's medium type; the barcode's media id
        where the drive does not tell."""
        memory = self.cartridge_memory()
        if memory is not None and not density_code:
            density_code = memory.density_code
        code = mt.DENSITY_MEDIA.get(density_code or 0)
        worm = memory.worm if memory is not None else None
        if code is None or worm is None:
            labelled = media_type_for(self._barcode_of(self.index))
            if code is None:
                return labelled
            worm = labelled.worm if labelled is not None else False
        found = MEDIA_TYPES[code]
        if not worm:
            return found
        # A generation without a WORM media id of its own (M8, LTO-10) keeps the data id.
        return media_type_of(found.generation, worm=True) or attrs.evolve(found, worm=True)

    def wait_ready(
        self, timeout: float | None = None, *, new_cartridge: bool = False
    ) -> DriveStatus:
        if timeout is None:
            timeout = self._timeouts.ready_new_cartridge if new_cartridge else self._timeouts.ready
        deadline = self._clock.now() + timeout
        while True:
            status = self.status()
            if status.state is DriveState.READY:
                return status
            if status.state is DriveState.OUT_OF_SERVICE:
                # It will not get ready on its own: waiting out the timeout would only delay
                # the operator's call.
                raise self._out_of_service("wait for", status.detail)
            if self._clock.now() >= deadline:
                raise errors.DriveNotReady(
                    f"Drive {self.index} did not become ready within {timeout:.0f} s (it is "
                    f"{status.state.value}{': ' + status.detail if status.detail else ''}). A "
                    f"new LTO-9 cartridge needs up to 2 hours on its first load; otherwise "
                    f"unload it and check the drive.",
                    drive=self.index,
                    device=self._binding.nst,
                )
            self._clock.sleep(self._timeouts.poll_interval)

    def identity(self) -> DriveIdentity:
        done = self._sg("sg_inq")
        device = done.command.argv[-1]
        if not done.ok:
            raise self._refused(done, "identify") or errors.DriveError(
                f"Cannot identify drive {self.index}: sg_inq {device} failed: "
                f"{done.stderr.strip() or 'no message'}.",
                drive=self.index,
                device=device,
                detail=done.stderr,
            )
        found = sg.parse_inquiry(done.stdout)
        if found.serial and found.serial != self._binding.serial:
            raise errors.DriveError(
                f"Drive {self.index} is configured with serial {self._binding.serial}, but "
                f"{device} answers with serial {found.serial}. Device nodes were renumbered: "
                f"fix the library config before using this drive.",
                drive=self.index,
                device=device,
            )
        return found

    def alerts(self) -> TapeAlerts:
        # Page 0x12 (TapeAlert response) reports the flags without clearing them; page 0x2E
        # clears them on read on many drives, so a status query would swallow the drive's
        # "clean now" before the driver's cleaning decision ever saw it. LTFS's own
        # `user.ltfs.mediaStorageAlert` is no way around that: LTFS reads page 0x2E to answer
        # it (src/tape_drivers/linux/sg/sg_tape.c, sg_get_tape_alert).
        done = self._sg("sg_logs", "-p", "0x12")
        device = done.command.argv[-1]
        if not done.ok:
            raise self._refused(done, "read the TapeAlert flags of") or errors.DriveError(
                f"Cannot read the TapeAlert flags of drive {self.index} ({device}): "
                f"{done.stderr.strip() or 'sg_logs failed'}.",
                drive=self.index,
                device=device,
                detail=done.stderr,
            )
        return sg.parse_tape_alert_response(done.stdout)

    def eject(self) -> None:
        device = self._nst("eject")
        self.check_movable("eject")
        done = self._runner.run(
            Command(argv=("mt", "-f", device, "offline"), timeout=self._timeouts.changer_move)
        )
        if not done.ok:
            raise mt.failure(done.stderr, device=device, drive=self.index, what="eject")
