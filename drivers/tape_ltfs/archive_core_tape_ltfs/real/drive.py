"""A drive over mt-st (non-rewinding node only) and sg3-utils (identity, TapeAlert)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.config import DriveBinding, Timeouts
from archive_core_tape_ltfs.model import DriveIdentity, DriveState, DriveStatus, TapeAlerts
from archive_core_tape_ltfs.parse import mt, sg
from archive_core_tape_ltfs.port import Clock
from archive_core_tape_ltfs.runner import Command, Runner

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
        held: Callable[[int], bool],
    ) -> None:
        self.index = binding.index
        self._binding = binding
        self._sg_device = sg_device
        self._runner = runner
        self._clock = clock
        self._timeouts = timeouts
        self._held = held

    def __repr__(self) -> str:
        return f"<ScsiDrive {self.index} serial={self._binding.serial}>"

    def _nst(self, what: str) -> str:
        if self._held(self.index):
            raise errors.DriveHeldByLtfs(
                f"Cannot {what} drive {self.index}: LTFS holds it. Unmount the volume first; "
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

    def status(self) -> DriveStatus:
        if self._held(self.index):
            # TEST UNIT READY over sg is harmless to LTFS; the tape node is not.
            device = self._sg_device()
            done = self._runner.run(
                Command(argv=("sg_turs", device), timeout=self._timeouts.status)
            )
            return DriveStatus(state=DriveState.READY if done.ok else DriveState.NOT_READY)
        device = self._nst("query")
        done = self._runner.run(
            Command(argv=("mt", "-f", device, "status"), timeout=self._timeouts.status)
        )
        if done.exit_code != 0:
            if "No medium found" in done.stderr or "offline" in done.stderr:
                return DriveStatus(state=DriveState.EMPTY)
            raise mt.failure(done.stderr, device=device, drive=self.index, what="query")
        return mt.parse_status(done.stdout)

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
            if self._clock.now() >= deadline:
                raise errors.DriveNotReady(
                    f"Drive {self.index} did not become ready within {timeout:.0f} s (it is "
                    f"{status.state.value}). A new LTO-9 cartridge needs up to 2 hours on its "
                    f"first load; otherwise unload it and check the drive.",
                    drive=self.index,
                    device=self._binding.nst,
                )
            self._clock.sleep(self._timeouts.poll_interval)

    def identity(self) -> DriveIdentity:
        device = self._sg_device()
        done = self._runner.run(Command(argv=("sg_inq", device), timeout=self._timeouts.status))
        if not done.ok:
            raise errors.DriveError(
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
        device = self._sg_device()
        done = self._runner.run(
            Command(argv=("sg_logs", "-p", "0x2e", device), timeout=self._timeouts.status)
        )
        if not done.ok:
            raise errors.DriveError(
                f"Cannot read TapeAlert flags of drive {self.index}: "
                f"{done.stderr.strip() or 'sg_logs failed'}.",
                drive=self.index,
                device=device,
                detail=done.stderr,
            )
        return sg.parse_tape_alerts(done.stdout)

    def eject(self) -> None:
        device = self._nst("eject")
        done = self._runner.run(
            Command(argv=("mt", "-f", device, "offline"), timeout=self._timeouts.changer_move)
        )
        if not done.ok:
            raise mt.failure(done.stderr, device=device, drive=self.index, what="eject")
