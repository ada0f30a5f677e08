"""The real library: changer, drives and LTFS wired to one Runner and the wall clock."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.config import LibraryConfig
from archive_core_tape_ltfs.parse import ltfs as ltfs_text
from archive_core_tape_ltfs.real.changer import MtxChanger
from archive_core_tape_ltfs.real.drive import ScsiDrive
from archive_core_tape_ltfs.real.ltfs import LtfsTools
from archive_core_tape_ltfs.real.mountfs import MountFs
from archive_core_tape_ltfs.real.processes import ProcessTable, ProcTable
from archive_core_tape_ltfs.retry import TransientRetry
from archive_core_tape_ltfs.runner import Command, Runner, SimulatedRunner, SubprocessRunner


class WallClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class RealLibrary:
    """The port over the system tools. Drive bays are bound to devices by configured serial."""

    def __init__(
        self,
        config: LibraryConfig,
        *,
        runner: Runner | None = None,
        clock=None,
        fs: MountFs | None = None,
        processes: ProcessTable | None = None,
        caller: str = "main",
    ) -> None:
        self.config = config
        self.runner = runner or SubprocessRunner()
        self.clock = clock or WallClock()
        if processes is None:
            # Tools played by a simulation know their own (not OS) processes.
            processes = self.runner if isinstance(self.runner, ProcessTable) else ProcTable()
        self._fs = fs
        self._processes = processes
        self._sg_cache: dict[int, str] = {}
        self._lock = threading.Lock()
        timeouts = config.timeouts
        retry = TransientRetry(
            clock=self.clock,
            unit_attention_retries=config.unit_attention_retries,
            becoming_ready=timeouts.becoming_ready,
            interval=timeouts.poll_interval,
        )
        assert config.changer is not None
        self.changer = MtxChanger(
            device=config.changer,
            runner=self.runner,
            retry=retry,
            move_timeout=timeouts.changer_move,
            status_timeout=timeouts.status,
            inventory_timeout=timeouts.inventory,
            held=self._holder,
            movable=self._check_movable,
        )
        self._drives = {
            b.index: ScsiDrive(
                binding=b,
                sg_device=lambda i=b.index: self._sg_of(i),
                runner=self.runner,
                clock=self.clock,
                timeouts=timeouts,
                held=self._holder,
                barcode_of=self._barcode_in,
            )
            for b in config.drives
        }
        self.ltfs = LtfsTools(
            config=config,
            runner=self.runner,
            clock=self.clock,
            device_of=self._ltfs_device,
            eject=lambda i: self.drive(i).eject(),
            worm_of=lambda index, barcode: self.drive(index).worm(barcode),
            processes=processes,
            fs=fs,
            caller=caller,
        )

    def __repr__(self) -> str:
        return f"<RealLibrary changer={self.config.changer} drives={sorted(self._drives)}>"

    def _barcode_in(self, index: int) -> str | None:
        bay = self.changer.inventory().drive(index)
        return bay.barcode if bay is not None and bay.full else None

    def _holder(self, index: int) -> str | None:
        return self.ltfs.holder(index)

    def _check_movable(self, index: int, what: str) -> None:
        if index in self._drives:  # a changer drive this host has no binding for: unknown
            self._drives[index].check_movable(what)

    def drive(self, index: int) -> ScsiDrive:
        try:
            return self._drives[index]
        except KeyError:
            raise errors.TapeError(
                f"Drive {index} is not in the library config (configured: "
                f"{', '.join(map(str, sorted(self._drives))) or 'none'}).",
                drive=index,
            ) from None

    def drive_indexes(self) -> tuple[int, ...]:
        return tuple(sorted(self._drives))

    @property
    def work_directory(self) -> Path:
        return self.config.work_directory

    def worker(self, name: str) -> RealLibrary:
        """This library for one concurrent caller (a thread): the same devices and mount
        registry, its mounts recorded under `name`. Real drives overlap by themselves, so it
        runs the same tools on the same clock; tools played by a simulation give it a timeline
        of its own, as a thread has on real hardware."""
        runner, clock = self.runner, self.clock
        if isinstance(runner, SimulatedRunner):
            runner = runner.worker(name)
            clock = runner.clock

        def same(part: Any) -> Any:
            # The simulated tools are the host's file system and process table too.
            return runner if part is self.runner else part

        return RealLibrary(
            self.config,
            runner=runner,
            clock=clock,
            fs=same(self._fs),
            processes=same(self._processes),
            caller=name,
        )

    def _ltfs_device(self, index: int) -> str:
        binding = self.config.binding(index)
        if binding is None:
            raise errors.TapeError(f"Drive {index} is not in the library config.", drive=index)
        return binding.ltfs_device

    def _sg_of(self, index: int) -> str:
        binding = self.config.binding(index)
        if binding is None:
            raise errors.TapeError(f"Drive {index} is not in the library config.", drive=index)
        if binding.sg:
            return binding.sg
        with self._lock:
            if index not in self._sg_cache:
                done = self.runner.run(
                    Command(argv=("ltfs", "-o", "device_list"), timeout=self.config.timeouts.status)
                )
                for listed in ltfs_text.parse_device_list(done.stdout):
                    for b in self.config.drives:
                        if listed.serial == b.serial:
                            self._sg_cache[b.index] = listed.device
            if index not in self._sg_cache:
                raise errors.DriveError(
                    f"No tape drive with serial {binding.serial} (drive {index}) is attached "
                    f"to this host: `ltfs -o device_list` does not list it.",
                    drive=index,
                )
            return self._sg_cache[index]
