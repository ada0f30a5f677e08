"""The changer over `mtx`: inventory, load, unload, transfer, with checks before every move."""

from __future__ import annotations

import logging
from collections.abc import Callable

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.model import Inventory, LoadRequest, TransferRequest, UnloadRequest
from archive_core_tape_ltfs.moves import empty_bay, free_slot, full_slot, unload_target
from archive_core_tape_ltfs.parse import mtx
from archive_core_tape_ltfs.retry import TransientRetry
from archive_core_tape_ltfs.runner import Command, CommandResult, Runner

logger = logging.getLogger(__name__)


class MtxChanger:
    """A SCSI medium changer driven with `mtx -f <device>`.

    Slot numbers are never trusted across calls: each move re-reads the element status first
    and checks that the source holds what the caller expects (libraries get rearranged by
    hand).
    """

    def __init__(
        self,
        *,
        device: str,
        runner: Runner,
        retry: TransientRetry,
        move_timeout: float,
        status_timeout: float,
        inventory_timeout: float,
        held: Callable[[int], str | None] = lambda _drive: None,
        movable: Callable[[int, str], None] = lambda _drive, _what: None,
    ) -> None:
        self.device = device
        self._runner = runner
        self._retry = retry
        self._move_timeout = move_timeout
        self._status_timeout = status_timeout
        self._inventory_timeout = inventory_timeout
        self._held = held
        # Raises when a drive cannot take a move now (out of service, optimising a cartridge).
        self._movable = movable

    def _mtx(self, *args: str | int, timeout: float) -> Command:
        return Command(argv=("mtx", "-f", self.device, *map(str, args)), timeout=timeout)

    def _run(self, command: Command, *, what: str, slot=None, drive=None) -> CommandResult:
        result = self._runner.run(command)
        if not result.ok:
            raise mtx.failure(
                result.stderr or result.stdout,
                device=self.device,
                what=what,
                slot=slot,
                drive=drive,
            )
        return result

    def _status(self) -> Inventory:
        result = self._run(self._mtx("status", timeout=self._status_timeout), what="read status")
        return mtx.parse_status(result.stdout)

    def inventory(self, *, rescan: bool = False) -> Inventory:
        if rescan:
            self._retry(
                "mtx inventory",
                lambda: self._run(
                    self._mtx("inventory", timeout=self._inventory_timeout),
                    what="rescan the library",
                ),
            )
        return self._retry("mtx status", self._status)

    def load(self, request: LoadRequest) -> None:
        def attempt() -> None:
            inventory = self._status()
            slot = full_slot(inventory, request.slot, request.barcode, what="load")
            empty_bay(inventory, request.drive, loading=slot.number)
            self._movable(request.drive, f"load slot {slot.number} into")
            self._run(
                self._mtx("load", slot.number, request.drive, timeout=self._move_timeout),
                what=f"load slot {slot.number} into drive {request.drive}",
                slot=slot.number,
                drive=request.drive,
            )

        self._retry("mtx load", attempt)

    def unload(self, request: UnloadRequest) -> int:
        if holder := self._held(request.drive):
            raise errors.UnloadRefused(
                f"Drive {request.drive} is still held by LTFS ({holder}); unmount the volume "
                f"and wait for the ltfs process to exit before unloading (moving the tape "
                f"earlier corrupts its index).",
                drive=request.drive,
                device=self.device,
            )
        self._movable(request.drive, "unload")

        def attempt() -> int:
            target = unload_target(self._status(), request.drive, request.slot)
            self._run(
                self._mtx("unload", target, request.drive, timeout=self._move_timeout),
                what=f"unload drive {request.drive} into slot {target}",
                slot=target,
                drive=request.drive,
            )
            return target

        return self._retry("mtx unload", attempt)

    def transfer(self, request: TransferRequest) -> None:
        def attempt() -> None:
            inventory = self._status()
            full_slot(inventory, request.source, request.barcode, what="move")
            free_slot(inventory, request.destination, what=f"move slot {request.source} to")
            self._run(
                self._mtx(
                    "transfer", request.source, request.destination, timeout=self._move_timeout
                ),
                what=f"move slot {request.source} to slot {request.destination}",
                slot=request.source,
            )

        self._retry("mtx transfer", attempt)
